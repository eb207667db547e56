// Package child is the Go worker SDK: the code that runs inside a worker process started by a
// supervise pool.
//
// Register handlers by name with [Handle], then call [Main] first thing in main. Started by a
// pool, the program serves handlers over its stdin/stdout and exits; started by a person, Main
// returns at once and the program runs as usual. One binary is both the program and its own
// workers, the way the supervise command is:
//
//	func main() {
//		child.Handle("square", func(ctx context.Context, x int) (int, error) { return x * x, nil })
//		child.Main() // serves and exits when this process is a worker
//
//		pool, err := supervisor.Start(context.Background(), supervisor.Config{})
//		...
//	}
//
// Inside a worker:
//   - handlers run one at a time, in the order calls arrive (the parent pipelines calls, so the
//     worker does not wait for the next one);
//   - the handler's context is cancelled when the parent sends a cancel for that task or the
//     parent goes away;
//   - a panic in a handler becomes that task's error, with the stack, and the worker goes on;
//   - os.Stdout (fd 1) is pointed at stderr, so a stray fmt.Println can never corrupt the
//     frame stream; log with log/slog, whose records the parent forwards with their level;
//   - a heartbeat is sent from a goroutine of its own, so a busy handler still beats;
//   - when the task was submitted with an OpenTelemetry span in its context, the handler's
//     context carries that span's trace as its remote span context
//     (trace.SpanContextFromContext gives it; spans the handler starts from it join the trace);
//   - [Report] sends the task's caller messages while it runs (progress, partial results), and
//     [Put] puts follow-up work on the queue the task came from.
package child
