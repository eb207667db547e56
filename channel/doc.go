// Package channel is the framed msgpack channel between a supervise parent and its workers.
//
// A frame is a 4-byte big-endian length, then one msgpack value: an array of messages
// ([Message]), so many small calls or results can share one frame (batching) and one write.
// The layout is specified byte by byte in docs/protocol.md; this package is its Go
// implementation and the only code in the module that touches frame bytes.
//
// A [Conn] has one reader and one writer side: one goroutine may call [Conn.Recv] while
// another calls [Conn.Send]; neither is safe for concurrent use with itself. Buffers are reused
// between frames: the only allocation per received message is its payload, and a large frame
// is read into a buffer of its own whose payloads are handed out without another copy. On
// Linux, payloads of 64 KiB or more go into a pipe by reference (vmsplice), without a copy on
// the sending side: see [Conn.Send] for what that asks of the sender.
//
// Errors are typed: every failure to read or write a frame is a [*FrameError] naming the peer
// and the frame number, and wraps one of [ErrFrameTooLarge], [ErrTruncated] or [ErrDecode]
// (or the underlying I/O error), so callers use errors.Is and errors.As.
package channel
