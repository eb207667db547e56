// Package jetstream runs a pool's work past one machine: queues on NATS JetStream, with a
// server embedded in the process by default (StartServer: nothing to install) or any NATS
// server with JetStream, alone or clustered.
//
// Three roles, each a few lines:
//
//   - a server: StartServer (supervise serve), keeping its streams in a directory so that a
//     restart loses nothing;
//   - worker machines: Serve pulls a queue's tasks for a local supervisor.Pool (supervise
//     worker --connect URL), of Go workers or of any program that speaks docs/protocol.md;
//   - submitters: a Client is a supervisor.QueueBackend, so supervisor.NewQueueOn gives the
//     same joinable Queue as on a pool (Put, Join, Results, TaskDone), and Submit gives
//     futures (supervise run/digest --connect URL).
//
// Delivery is at least once: a machine acks a task only after its outcome is stored; a task
// whose machine goes silent for AckWait (killed, cut off) is delivered to another; a task
// whose worker process dies is handed back, up to MaxDeliver deliveries. So a handler may
// start more than once for one task, and should be idempotent. Outcomes are exactly once: the
// results stream keeps one message per task, the first stored, and the Client settles each
// task once. A message that is not a task of the protocol, and a task or result too large for
// the server, go to the queue's dead-letter subject (supervise.QUEUE.dead) with the reason in
// a header; the task's caller gets an error naming it.
//
// A Client sends the tasks submitted close together as one message (up to Config.MaxBatch,
// sized by default from how long the machines say tasks take: about 50 ms of work), and a
// machine stores their outcomes together: small tasks then cost the server a share of a
// message each. A task whose worker dies is handed back alone: the outcomes of its
// batch-mates are stored, and they do not run again.
//
// The wire format of tasks and results, and the names of streams and subjects, are in
// docs/protocol.md, section 9.
package jetstream
