package conformance

import (
	"fmt"
	"strings"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
)

// The checks of how a worker meets what it should refuse or ignore (docs/protocol.md,
// sections 2, 4 and 5).

// checkWrongCookie starts the worker with a cookie that is set but wrong: it must refuse as
// when the cookie is missing.
func checkWrongCookie(s *suite) (string, error) {
	return refuses(s, map[string]string{handshake.CookieKey: "not-the-cookie"}, "with a wrong "+handshake.CookieKey)
}

// checkOtherProtocol starts the worker with SUPERVISE_PROTOCOL=2: its hello still says the
// version it speaks, 1, and the parent decides (section 4).
func checkOtherProtocol(s *suite) (string, error) {
	vars := handshakeEnv(defaultMaxFrame, time.Second)
	vars[handshake.ProtocolKey] = "2"
	p, err := startWith(s.command, s.hello, defaultMaxFrame, vars)
	if err != nil {
		return "", fmt.Errorf("with %s=2: %w", handshake.ProtocolKey, err)
	}
	defer p.close()
	if p.hello.Protocol != channel.ProtocolVersion {
		return "", fmt.Errorf("with %s=2 the hello says protocol %d; want the version the worker speaks, %d", handshake.ProtocolKey, p.hello.Protocol, channel.ProtocolVersion)
	}
	return fmt.Sprintf("hello of protocol %d", p.hello.Protocol), nil
}

// checkEmptyBatch and checkNotAnArray send a frame that breaks section 2 or 3: the worker must
// exit non-zero, answering nothing.
func checkEmptyBatch(s *suite) (string, error) {
	return exitsNonZeroOn(s, []byte{0x90}, "an empty batch")
}

func checkNotAnArray(s *suite) (string, error) {
	return exitsNonZeroOn(s, []byte{0x91, 0x2a}, "a message that is not an array")
}

func exitsNonZeroOn(s *suite, body []byte, what string) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		if err := p.sendRaw(body); err != nil {
			return "", err
		}
		state, err := p.wait(answerTimeout)
		if err != nil {
			return "", fmt.Errorf("after a frame holding %s, the worker is %v (want an exit with a non-zero status)", what, err)
		}
		if state.ExitCode() == 0 {
			return "", fmt.Errorf("after a frame holding %s, the worker exited with status 0 (want non-zero)", what)
		}
		if m, err := p.next(0); err == nil {
			return "", fmt.Errorf("after a frame holding %s, the worker sent a %s", what, m.Kind)
		}
		return fmt.Sprintf("%v, stderr %s", state, quote(strings.TrimSpace(p.stderr.tail(200)), 100)), nil
	})
}

// checkAfterShutdown sends a call, a shutdown and another call in one frame: the first is
// answered, what follows the shutdown is ignored, and the worker exits 0.
func checkAfterShutdown(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		if err := p.send(call(1, "echo", mustMarshal(1)), channel.Message{Kind: channel.KindShutdown},
			call(2, "echo", mustMarshal(2))); err != nil {
			return "", err
		}
		if _, _, err := p.answers([]uint64{1}, answerTimeout); err != nil {
			return "", err
		}
		return exitsZero(p, "after a call, a shutdown and a call")
	})
}

// checkOversizedAnswer, with a 1 MiB frame limit, calls fail on a string whose error message
// cannot fit in a frame: the worker answers with an error that fits (section 9: type
// "encode"), and goes on.
func checkOversizedAnswer(s *suite) (string, error) {
	const limit = 1 << 20
	return s.withPeerOpts(limit, time.Second, func(p *peer) (string, error) {
		// The call's frame takes 15 bytes beside the string: it fits. An error message that
		// holds the string, with the error map around it, cannot.
		big := strings.Repeat("x", limit-20)
		if err := p.send(call(1, "fail", mustMarshal(big))); err != nil {
			return "", err
		}
		m, err := p.next(answerTimeout)
		if err != nil {
			return "", fmt.Errorf("fail on %d bytes under a %d-byte frame limit: %w", len(big), limit, err)
		}
		if m.Kind != channel.KindError || m.ID != 1 || m.Err == nil {
			return "", fmt.Errorf("fail on %d bytes: a %s for task %d, want an error that fits in a frame", len(big), m.Kind, m.ID)
		}
		if err := echoAll(p, []string{"echo after it"}, [][]byte{mustMarshal("still here")}, 1); err != nil {
			return "", err
		}
		return fmt.Sprintf("answered with an error of type %q, %d bytes of message", m.Err.Type, len(m.Err.Message)), nil
	})
}
