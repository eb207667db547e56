package channel

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// megabytePipe is a pipe that holds 1 MiB, closed at the end of the test.
func megabytePipe(t *testing.T) (r, w *os.File) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		t.Skip("cannot grow the pipe:", err)
	}
	return r, w
}

// TestPipeHoldsPayloadUntilRead: a big payload sent into a pipe goes by reference, and the
// Conn keeps it until the reader has read past it, not merely until Send returns.
func TestPipeHoldsPayloadUntilRead(t *testing.T) {
	r, w := megabytePipe(t)
	sender := NewConn(bytes.NewReader(nil), w, Options{Peer: "reader"})
	big := bytes.Repeat([]byte("0123456789abcdef"), 32<<10) // 512 KiB: fits in the pipe
	if err := sender.Send(Message{Kind: KindCall, ID: 1, Bin: big}); err != nil {
		t.Fatal(err)
	}
	if len(sender.pipe.held) != 1 || &sender.pipe.held[0].data[0] != &big[0] {
		t.Fatalf("after Send: holding %d payloads, want the one sent by reference", len(sender.pipe.held))
	}
	if err := sender.Send(Message{Kind: KindHeartbeat}); err != nil {
		t.Fatal(err)
	}
	if len(sender.pipe.held) != 1 {
		t.Fatalf("let go of a payload the reader has not read (holding %d)", len(sender.pipe.held))
	}

	receiver := NewConn(r, io.Discard, Options{Peer: "sender"})
	for _, want := range []Kind{KindCall, KindHeartbeat} {
		msgs, err := receiver.Recv()
		if err != nil || len(msgs) != 1 || msgs[0].Kind != want {
			t.Fatalf("Recv: %v %+v, want one %v", err, msgs, want)
		}
		if want == KindCall {
			var got []byte
			if err := Unmarshal(msgs[0].Payload, &got); err != nil || !bytes.Equal(got, big) {
				t.Fatalf("payload read from the pipe differs (err %v)", err)
			}
		}
	}
	if err := sender.Send(Message{Kind: KindHeartbeat}); err != nil {
		t.Fatal(err)
	}
	if len(sender.pipe.held) != 0 {
		t.Fatalf("the reader has read everything, yet %d payloads are held", len(sender.pipe.held))
	}
}

// TestPipeBigPayloadsLargerThanThePipe: payloads larger than the pipe, starting mid-page,
// cross a default-sized (64 KiB) pipe while the reader reads, several frames in a row; by
// reference, and by copy (where vmsplice is refused).
func TestPipeBigPayloadsLargerThanThePipe(t *testing.T) {
	for _, byCopy := range []bool{false, true} {
		t.Run(map[bool]string{false: "vmsplice", true: "copy"}[byCopy], func(t *testing.T) {
			testPipeBigPayloads(t, byCopy)
		})
	}
}

func testPipeBigPayloads(t *testing.T, byCopy bool) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	src := make([]byte, 3<<20+7)
	for i := range src {
		src[i] = byte(i * 7 >> 3)
	}
	sizes := []int{64 << 10, 1<<20 + 3, 3 << 20, 200 << 10}
	done := make(chan error, 1)
	go func() { // closes w on every path, so that the reader below never waits for ever
		c := NewConn(nil, w, Options{Peer: "reader"})
		c.pipe.byCopy = byCopy
		err := func() error {
			for i, n := range sizes {
				if err := c.Send(Message{Kind: KindResult, ID: uint64(i), Bin: src[i+1 : i+1+n]}, Message{Kind: KindHeartbeat}); err != nil {
					return err
				}
				if byCopy && len(c.pipe.held) != 0 {
					return fmt.Errorf("frame %d: copied, yet %d payloads held", i, len(c.pipe.held))
				}
			}
			return nil
		}()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	c := NewConn(r, io.Discard, Options{Peer: "writer"})
	for i, n := range sizes {
		msgs, err := c.Recv()
		if err != nil || len(msgs) != 2 || msgs[0].ID != uint64(i) {
			t.Fatalf("frame %d: %v %+v", i, err, msgs)
		}
		var got []byte
		if err := Unmarshal(msgs[0].Payload, &got); err != nil || !bytes.Equal(got, src[i+1:i+1+n]) {
			t.Fatalf("frame %d: the %d-byte payload differs (err %v)", i, n, err)
		}
	}
	if _, err := c.Recv(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPipePayloadSurvivesGC: a payload in the pipe that nothing but the Conn refers to keeps
// its bytes through garbage collections that would otherwise give its memory to new objects.
func TestPipePayloadSurvivesGC(t *testing.T) {
	r, w := megabytePipe(t)
	const size = 256 << 10
	sender := NewConn(bytes.NewReader(nil), w, Options{Peer: "reader"})
	func() {
		b := bytes.Repeat([]byte{0xab}, size)
		if err := sender.Send(Message{Kind: KindCall, ID: 1, Bin: b}); err != nil {
			t.Fatal(err)
		}
	}()
	var junk [][]byte
	for range 16 {
		runtime.GC()
		junk = append(junk, bytes.Repeat([]byte{0xcd}, size))
	}
	msgs, err := NewConn(r, io.Discard, Options{Peer: "sender"}).Recv()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Recv: %v %+v", err, msgs)
	}
	var got []byte
	if err := Unmarshal(msgs[0].Payload, &got); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0xab}, size)) {
		t.Fatalf("the payload changed in the pipe: %d bytes, %d of them 0xcd (err %v)", len(got), bytes.Count(got, []byte{0xcd}), err)
	}
	runtime.KeepAlive(junk)
	runtime.KeepAlive(sender) // the Conn holds the payload; it must outlive the reader's Recv
}
