package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/logline"
)

// Plugin makes a pool's workers processes that the pool does not speak frames with:
// hashicorp/go-plugin plugins (package supervisor/goplugin implements Plugin for them), or any
// RPC server a Go client can talk to. The pool still owns every process: it starts
// Config.Command as the leader of its own process group with the parent-death signal, forwards
// its stderr as log records, samples its CPU and memory (Stats, the memory limits), kills its
// group with the kill ladder, and replaces it as Config.Restart says. A call is a Go function
// run in this process on a worker's client (Pool.Call), under the pool's time limits: past
// Config.TaskTimeout its context is cancelled, and Config.CancelGrace later the worker is
// killed and replaced, failing only the calls it was running (Config.InFlight of them at most,
// 1 by default for plugins). A worker that answers no Ping for Config.HangTimeout is hung.
//
// When this program calls child.Main (as programs that re-execute themselves as workers do),
// each plugin runs under a keeper: this executable re-executed, leading the process group, the
// plugin its child. The keeper exits as the plugin does; if this process dies, even by
// SIGKILL, the keeper gets the parent-death signal and kills the whole group with the kill
// ladder, so nothing the plugin started outlives it. Without child.Main the plugin itself leads
// the group and gets the parent-death signal (SIGHUP: a go-plugin plugin dies of it), and
// processes it started may outlive it. Process.Pid and Stats then show the keeper's pid; the
// plugin's CPU and memory count as its descendant's.
//
// Config.Init, Submit, Map and the queues need workers that speak frames; on a plugin pool
// their calls fail.
type Plugin interface {
	// Connect starts one worker process with proc.Start, waits until it can take calls and
	// returns the connection to it. ctx ends Config.StartTimeout after the start began. If
	// Connect fails, the process is killed and the start counts as failed (see
	// RestartPolicy).
	Connect(ctx context.Context, proc *Process) (PluginConn, error)
}

// PluginConn is the pool's connection to one plugin worker.
type PluginConn interface {
	// Client is what the functions given to Pool.Call receive for this worker.
	Client() any
	// Ping returns nil while the worker answers. The pool calls it every Config.Heartbeat,
	// and after a call that returned an error (a failed Ping then means the worker is gone:
	// the call fails with the worker's exit status and stderr).
	Ping() error
	// Close asks the worker to exit, may kill it (Process.Kill), and releases the connection.
	// It returns once the process has exited. The pool calls it when the worker is to stop,
	// and after the process has exited, so it must be safe to call twice.
	Close() error
}

// Process is a plugin worker's process, as Plugin.Connect sees it.
type Process struct{ w *worker }

// Start starts Config.Command, its environment the parent's plus Config.Env plus env, in
// Config.Dir, stdin reading /dev/null, as the leader of its own process group. It returns the
// process's stdout; stderr is forwarded by the pool (see Config.Logger). Call it once.
func (pr *Process) Start(env []string) (stdout io.Reader, err error) {
	if pr.w.cmd != nil {
		return nil, errors.New("supervise: Process.Start called twice")
	}
	if err := pr.w.spawn(env, false); err != nil {
		return nil, err
	}
	return pr.w.stdout, nil
}

// Pid is the process's id, 0 before Start.
func (pr *Process) Pid() int { return pr.w.pid }

// Command is the process's argv (Config.Command).
func (pr *Process) Command() []string { return slices.Clone(pr.w.p.cfg.Command) }

// Logger is the pool's logger tagged with the worker's id (and pid, once started).
func (pr *Process) Logger() *slog.Logger {
	if pr.w.log != nil {
		return pr.w.log
	}
	return pr.w.p.log.With("worker", pr.w.id)
}

// Stderr is a writer whose lines are handled as lines of the process's stderr: logged (see
// Config.Logger) and kept for the errors that quote its stderr. For output that reaches the
// parent another way (go-plugin carries a plugin's os.Stderr over its RPC connection).
func (pr *Process) Stderr() io.Writer {
	return &logline.Writer{Log: pr.Logger(), OnLine: pr.w.tail.add}
}

// Wait returns once the process has been reaped (the pool reaps it), or ctx ends: nil if it
// exited with status 0.
func (pr *Process) Wait(ctx context.Context) error {
	select {
	case <-pr.w.waited:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s := pr.w.state; s != nil && !s.Success() {
		return fmt.Errorf("worker %d (pid %d): %s", pr.w.id, pr.w.pid, exitDescription(s))
	}
	return nil
}

// Kill kills the process's group with the kill ladder (SIGTERM, SIGKILL Config.StopGrace
// later) and returns once it is reaped.
func (pr *Process) Kill() {
	w := pr.w
	if w.cmd == nil || w.reaped() {
		return
	}
	w.kill(syscall.SIGTERM)
	fire, stop := w.p.clock.timer(w.p.cfg.StopGrace)
	defer stop()
	select {
	case <-w.waited:
	case <-fire:
		w.kill(syscall.SIGKILL)
		<-w.waited
	}
}

// pluginLink is what a plugin worker has instead of a frame connection.
type pluginLink struct {
	w        *worker
	conn     PluginConn
	calls    sync.WaitGroup // one per call running (runCall)
	pingDone chan struct{}
}

var errNotPluginPool = errors.New("supervise: Pool.Call needs a pool of plugin workers (Config.Plugin); call handlers with Bind")
var errPluginPool = errors.New("supervise: this pool's workers are plugins (Config.Plugin): call them with Pool.Call")

// startPlugin starts a plugin worker through Config.Plugin.
func (w *worker) startPlugin() error {
	cfg := &w.p.cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	conn, err := cfg.Plugin.Connect(ctx, &Process{w: w})
	switch {
	case err != nil && w.cmd == nil:
		return w.startError(err)
	case err != nil:
		return w.abort(w.startError(err))
	case w.cmd == nil:
		_ = conn.Close()
		return w.startError(errors.New("Plugin.Connect returned without starting the process (Process.Start)"))
	}
	l := &pluginLink{w: w, conn: conn, pingDone: make(chan struct{})}
	w.link = l
	w.concurrency = cfg.InFlight // calls run side by side: all those sent are running
	go l.ping()
	return nil
}

// ping is a plugin worker's heartbeat: a successful Ping every Config.Heartbeat, until run
// closes quit. A Ping that blocks (the process is stopped) leaves lastSeen behind, and the
// watchdog kills the worker as hung; the connection then fails and Ping returns.
func (l *pluginLink) ping() {
	w := l.w
	defer close(l.pingDone)
	t := time.NewTicker(w.p.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		if l.conn.Ping() == nil {
			w.lastSeen.Store(w.p.clock.now().UnixNano())
		}
	}
}

// send starts the calls the sender took (and holds now), each in its own goroutine.
func (l *pluginLink) send(tasks []*task) error {
	w := l.w
	for _, t := range tasks {
		ctx, stop := context.WithCancel(t.ctx)
		w.mu.Lock()
		t.stopCall = stop
		cancelled := !t.cancelSent.IsZero()
		w.mu.Unlock()
		if cancelled { // by Shutdown, between the sender's taking it and now
			stop()
		}
		l.calls.Add(1)
		go l.runCall(t, ctx, stop)
	}
	return nil
}

// cancel has nothing to send: the call's context is cancelled (task.stopCall).
func (l *pluginLink) cancel(uint64) {}

func (l *pluginLink) bytes() (in, out uint64) { return 0, 0 }

// shutdown closes the connection: the plugin exits.
func (l *pluginLink) shutdown() { _ = l.conn.Close() }

// serve waits for the process to be reaped: a plugin's stream is not ours to read.
func (l *pluginLink) serve() error {
	<-l.w.waited
	return nil
}

// runCall runs one call on the plugin worker and settles it, unless the worker died under it:
// then run settles it with the worker's exit status and stderr, or gives it to another worker
// (Config.Retries).
func (l *pluginLink) runCall(t *task, ctx context.Context, stop context.CancelFunc) {
	w := l.w
	defer l.calls.Done()
	err := l.callPlugin(ctx, t)
	stop()
	if err != nil && l.conn.Ping() != nil {
		// Gone, or going: leave the call to run, which has its exit status. If it is alive
		// and unreachable after StopGrace, its owner kills it.
		w.mail.post(order{kind: orderReap})
		return
	}
	now := w.p.clock.now()
	w.lastSeen.Store(now.UnixNano())
	t, timedOut, closing := w.answered(t.id, now)
	if t == nil { // settled already: failed by its hard time limit, or its worker ended
		return
	}
	w.answeredAny.Store(true) // it works: a death under a call is the call's doing
	if w.p.streak.Load() != 0 {
		w.p.streak.Store(0) // the pool makes progress: see RestartPolicy
	}
	w.settleAnswer(t, timedOut, closing, nil, err)
}

// callPlugin runs the call's function on the worker's client; a panic is its error.
func (l *pluginLink) callPlugin(ctx context.Context, t *task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &RemoteError{Type: "panic", Message: fmt.Sprint(r), Traceback: string(debug.Stack())}
		}
	}()
	return t.call(ctx, l.conn.Client())
}

// end closes a plugin worker's connection once its process is gone, and waits for its calls
// and its pinger to return.
func (l *pluginLink) end() {
	_ = l.conn.Close()
	l.calls.Wait()
	<-l.pingDone
}

// Call runs fn on the client of one of the pool's plugin workers (Config.Plugin), whichever
// the pool picks when one is free, and returns once the call has ended: nil, fn's error, or
// why it could not run, as a *TaskError naming name (for errors, events and Stats), the worker
// and its pid. ctx is the call's: while it is queued, its end drops the call; while it runs,
// fn's context (which derives from ctx) is cancelled, at its end or at Config.TaskTimeout,
// and a call still running Config.CancelGrace later fails and its worker is killed and
// replaced. fn must return once its context is done or the worker's connection fails. A panic
// in fn is its error.
func (p *Pool) Call(ctx context.Context, name string, fn func(ctx context.Context, client any) error) error {
	return p.call(ctx, name, fn, nil)
}

// CallOn is Call on the worker with that id (see Workers), and only on it: if that worker has
// exited, or dies before the call ends, the call fails with ErrWorkerDied.
func (p *Pool) CallOn(ctx context.Context, workerID int, name string, fn func(ctx context.Context, client any) error) error {
	p.mu.Lock()
	var pin *worker
	for w := range p.workers {
		if w.id == workerID {
			pin = w
		}
	}
	p.mu.Unlock()
	if pin == nil {
		return &TaskError{Handler: name, WorkerID: workerID, Err: fmt.Errorf("%w: no live worker %d", ErrWorkerDied, workerID)}
	}
	return p.call(ctx, name, fn, pin)
}

func (p *Pool) call(ctx context.Context, name string, fn func(context.Context, any) error, pin *worker) error {
	o := taskOpts{pin: pin, retries: -1}
	t := p.newTask(ctx, name, o)
	if p.cfg.Plugin == nil {
		t.fail(nil, errNotPluginPool)
		return t.err
	}
	t.call = fn
	p.enqueue(t, o)
	select {
	case <-t.done:
	case <-ctx.Done():
		queued := false
		if pin != nil {
			queued = pin.unpin(t)
		} else {
			queued = p.backlog.remove(t)
		}
		if queued { // it never runs
			t.fail(nil, ctx.Err())
		}
		<-t.done
	}
	return t.err
}
