// Package supervisor runs a pool of worker processes and feeds them tasks.
//
// A worker is a process that speaks the protocol of docs/protocol.md over its stdin and stdout:
// usually the same binary re-executed (see package child), or any command given in
// [Config.Command]. The pool starts [Config.Workers] of them, sends each task as a call frame,
// pipelining several per worker and batching small ones into one frame, and hands the answer
// back through a [Future] or the Map iterators.
//
// The data path, top to bottom: [Func.Submit] encodes the input and puts a task on the
// backlog (pool.go submit, backlog.go: idle workers first); a worker's sender takes as many
// tasks as it has free slots, records them in the worker's ledger and writes them as one frame
// (feeder.go send, ledger.go); the worker process answers; the worker's reader reads the
// answer frame, takes the call out of the ledger and settles the task (reader.go), which wakes
// [Future.Get] or runs [Future.OnDone]'s callback. Beside it, the worker's owner (worker.go
// run, owner.go), one goroutine in a select loop, asks the watchdog at each tick of the
// pool's clock what the time and memory limits call for (watchdog.go: pure decisions over the
// ledger) and carries out kills, its own and those other goroutines post to it; the process
// (process.go) is spawned, reaped and signalled as one object; when its stream ends, the
// owner asks the ledger which calls it held fail, go again, or go back to the backlog.
//
// Every task ends exactly once, as a result or as a *[TaskError]: a handler's error or panic
// (wrapping a *[RemoteError]), a dead worker (wrapping a *[WorkerError] with the exit status
// or signal and the tail of its stderr), or [ErrPoolClosed]. A worker that dies is replaced;
// the calls it had been sent but had not started go to another worker.
//
// Misbehaving workers are killed, never waited for: a call past [Config.TaskTimeout] is
// cancelled, then its worker killed after [Config.CancelGrace]; a worker silent for
// [Config.HangTimeout] is hung; one over [Config.MemoryHardLimit] is killed, over
// [Config.MemorySoftLimit] recycled. Only the calls it was running fail ([ErrTimeout],
// [ErrHung], [ErrMemoryLimit]); the others go to another worker.
//
// Workers lead their own process group and are killed as a group (SIGTERM, then SIGKILL after
// [Config.StopGrace]); on Linux they also get a parent-death signal, so even a parent killed
// with SIGKILL leaves none behind.
//
// Workers that die are replaced as the [RestartPolicy] says (restart intensity with a
// decaying failure count, backoff with jitter, after thejerf/suture); a worker command that
// cannot start, or exits at once, breaks the pool ([ErrPoolBroken]) instead of spinning.
// [Config.EventHook] receives typed events (worker started, killed, exited, task retried,
// restart backoff, pool broken), which are also logged with log/slog.
//
// Beyond map: [NewQueue] makes a joinable queue (Put with backpressure, Join, Results, and
// follow-up items that handlers put with child.Put); child.Report sends a running task's
// caller messages, read with [Future.Reports]; [Func.Broadcast] runs a handler once on every
// worker, and [Config.Init] on every worker before its first task.
//
// Watching: [Pool.Stats] and [Pool.WatchStats] give the machine's per-core utilization and,
// per worker slot, the process's state, CPU time and utilization (its whole process tree's,
// grandchildren included), memory, tasks and restarts, with the slowest tasks so far. Figures
// are deltas over [Config.StatsInterval], sampled only while someone asks.
//
// Workers that are not ours: with [Config.Plugin] the pool runs processes it does not speak
// frames with, such as hashicorp/go-plugin plugins (package supervisor/goplugin), under the
// same policies, and [Pool.Call] runs a Go function on a worker's client (plugin.go).
//
// Stopping: [Pool.Close] finishes every task submitted, queued or running; [Pool.Shutdown]
// fails the queued ones, lets the running ones finish until its context ends, then cancels
// them and kills workers still busy [Config.CancelGrace] later. Both return once every worker
// is reaped and every goroutine of the pool has ended.
package supervisor
