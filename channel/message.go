package channel

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ProtocolVersion is the version of docs/protocol.md this package speaks.
const ProtocolVersion = 1

// DefaultMaxFrame is the largest frame accepted or sent unless configured otherwise: 64 MiB.
const DefaultMaxFrame = 64 << 20

// MaxBatch is the most messages one frame may hold (docs/protocol.md, section 2). A frame
// of a few megabytes could otherwise hold millions of tiny messages, each taking far more
// memory decoded than on the wire.
const MaxBatch = 4096

// Kind says what a message is. The numbers are part of the wire protocol.
type Kind uint8

// Message kinds (docs/protocol.md, section 3).
const (
	KindHello     Kind = 1  // worker -> parent, first message: Payload is a Hello
	KindCall      Kind = 2  // parent -> worker: run handler Name on Payload as task ID
	KindResult    Kind = 3  // worker -> parent: task ID succeeded with Payload
	KindError     Kind = 4  // worker -> parent: task ID failed with Err (ID 0: the worker itself)
	KindCancel    Kind = 5  // parent -> worker: stop task ID
	KindHeartbeat Kind = 6  // worker -> parent: still alive
	KindLog       Kind = 7  // worker -> parent: Payload is a log record map
	KindShutdown  Kind = 8  // parent -> worker: answer what you hold, then exit
	KindPut       Kind = 9  // worker -> parent: during task ID, put Payload on the queue ID came from
	KindReport    Kind = 10 // worker -> parent: during task ID, a message for its caller (progress, ...)
	KindChunk     Kind = 11 // parent -> worker: run handler Name on each input of Payload (an array); one answer (chunk.go)
)

var kindNames = [...]string{"invalid", "hello", "call", "result", "error", "cancel", "heartbeat", "log", "shutdown", "put", "report", "chunk"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one envelope: [kind, id, name, payload, error] on the wire.
type Message struct {
	Kind Kind
	ID   uint64 // task id; 0 for messages that are not about a task
	Name string // handler name, in a call
	// Payload is one encoded msgpack value; nil means msgpack nil. A received payload owns its
	// memory (it is never overwritten by a later Recv).
	Payload msgpack.RawMessage
	// Bin, when not nil, is the payload as raw bytes: it is sent as msgpack bin, from this
	// memory, without being encoded or copied first, and Payload is ignored. Send only.
	// A Payload or Bin of 64 KiB or more that Send writes into a pipe may still be read from
	// this memory after Send returns (see Conn.Send): leave its bytes alone.
	Bin []byte
	Err *RemoteError // set in KindError messages
	// Trace, in a call, is the W3C traceparent of the span the call belongs to
	// ("00-<trace id>-<span id>-<flags>"), or "" (docs/protocol.md, section 3). It travels as
	// the envelope's sixth element, which workers that predate it ignore. A received one
	// longer than MaxTrace bytes, or in another kind of message, is dropped.
	Trace string
}

// MaxTrace is the longest Trace a receiver keeps: a traceparent of a later version may be
// longer than version 00's 55 characters, but not by much.
const MaxTrace = 256

// RemoteError is a failure reported by the other side in a KindError message.
type RemoteError struct {
	Type      string `msgpack:"type"`                // class of failure: "error", "panic", "decode", ...
	Message   string `msgpack:"message"`             // human-readable text
	Traceback string `msgpack:"traceback,omitempty"` // stack or traceback, when known
}

// ErrPanic matches (errors.Is) a RemoteError of Type "panic": a Go handler panicked. (A
// Python handler's exception comes with its class name as Type, e.g. "ValueError".)
var ErrPanic = errors.New("the handler panicked")

// Is matches ErrPanic for a panic.
func (e *RemoteError) Is(target error) bool { return target == ErrPanic && e.Type == "panic" }

func (e *RemoteError) Error() string {
	if e.Type == "" || e.Type == "error" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

// Hello is the payload of the worker's first message (docs/protocol.md, section 4).
type Hello struct {
	Protocol int      `msgpack:"protocol"`
	Pid      int      `msgpack:"pid"`
	Language string   `msgpack:"language"`
	Handlers []string `msgpack:"handlers"`
	// Concurrency is how many calls the worker runs at once, in the order they arrive; 0 means
	// 1. The parent uses it to know which calls a dead worker may have started: the rest are
	// given to another worker.
	Concurrency int `msgpack:"concurrency,omitempty"`
	// Chunks says the worker runs chunk calls (KindChunk). A worker that does not say so
	// never gets one.
	Chunks bool `msgpack:"chunks,omitempty"`
	// Progress says the worker keeps its chunks' record in the progress page the parent gave
	// it (progress.go). Under at-most-once, a worker that does not never gets chunk calls:
	// the parent could not tell which of a chunk's inputs ran if it died.
	Progress bool `msgpack:"progress,omitempty"`
}
