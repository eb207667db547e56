package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// clusterFlags say which NATS JetStream queue a command works on (--connect and the rest).
type clusterFlags struct {
	connect    string
	queue      string
	nkeySeed   string
	tlsCA      string
	ackWait    time.Duration
	maxDeliver int
}

func (cf *clusterFlags) add(fs *pflag.FlagSet, role string) {
	fs.StringVar(&cf.connect, "connect", "", role+" through the NATS JetStream server at `URL` (nats://[TOKEN@]HOST:PORT, tls://...) instead of a local pool; see supervise serve")
	fs.StringVar(&cf.queue, "queue", "default", "the queue's name on the server (--connect)")
	fs.StringVar(&cf.nkeySeed, "nkey-seed", "", "sign in to the server with the nkey seed in `FILE` (--connect)")
	fs.StringVar(&cf.tlsCA, "tls-ca", "", "trust the server's TLS certificate when signed by the CA in `FILE` (--connect)")
	fs.DurationVar(&cf.ackWait, "ack-wait", 30*time.Second, "a task whose machine is silent this long goes to another (--connect)")
	fs.IntVar(&cf.maxDeliver, "max-deliver", 5, "deliveries of a task at most: a lost machine or a dead worker process costs one (--connect)")
}

func (cf *clusterFlags) config(log *slog.Logger) jetstream.Config {
	return jetstream.Config{Queue: cf.queue, AckWait: cf.ackWait, MaxDeliver: cf.maxDeliver, Logger: log}
}

// dial connects to the server at --connect, reconnecting for as long as it takes (a server
// restarting loses nothing: tasks and results are in its store).
func (cf *clusterFlags) dial(log *slog.Logger, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from the server; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if cf.nkeySeed != "" {
		opt, err := nats.NkeyOptionFromSeed(cf.nkeySeed)
		if err != nil {
			return nil, fmt.Errorf("--nkey-seed: %w", err)
		}
		opts = append(opts, opt)
	}
	if cf.tlsCA != "" {
		opts = append(opts, nats.RootCAs(cf.tlsCA))
	}
	nc, err := nats.Connect(cf.connect, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redact(cf.connect), err)
	}
	return nc, nil
}

// redact hides the token or password in server URLs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// job is where a job's tasks run: a local pool, or the worker machines of a queue.
type job struct {
	pool        *supervisor.Pool // local
	means       *coreMeans       // local, with a report
	stopMonitor func()
	nc          *nats.Conn // --connect
	client      *jetstream.Client
	log         *slog.Logger
}

// startJob starts the pool of a job, or with --connect joins the queue.
func startJob(ctx context.Context, pf *poolFlags, cf *clusterFlags, cfg supervisor.Config, view *liveView) (*job, error) {
	if cf.connect == "" {
		pool, means, stop, err := startJobPool(ctx, pf, cfg, view)
		if err != nil {
			return nil, err
		}
		return &job{pool: pool, means: means, stopMonitor: stop}, nil
	}
	if pf.report || pf.reportJSON != "" {
		return nil, errors.New("--report and --report-json describe a local pool: not with --connect")
	}
	nc, err := cf.dial(cfg.Logger, "supervise submitter")
	if err != nil {
		return nil, err
	}
	client, err := jetstream.NewClient(ctx, nc, cf.config(cfg.Logger))
	if err != nil {
		nc.Close()
		return nil, err
	}
	if pf.uiListener != nil { // a view of the queue's machines
		machines, err := jetstream.WatchMachines(ctx, nc, cf.queue)
		if err != nil {
			client.Close()
			nc.Close()
			return nil, fmt.Errorf("--ui: %w", err)
		}
		serveUI(pf.uiListener, "supervise: the machines of queue "+cf.queue, queueMachines(machines))
	}
	return &job{nc: nc, client: client, stopMonitor: watchPulls(ctx, client, cf), log: cfg.Logger}, nil
}

// pullsNotice is how long a --connect run waits for a machine to take a task before it says
// that none has.
var pullsNotice = 5 * time.Second

// watchPulls tells, once, when no machine has taken a task of the queue pullsNotice after
// the run began (and none waits for one): the run goes on waiting. stop ends the watch.
func watchPulls(ctx context.Context, client *jetstream.Client, cf *clusterFlags) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		base, _, err := client.Pulls(ctx)
		if err != nil {
			return // not allowed to look, say: nothing to tell
		}
		tick := time.NewTicker(pullsNotice)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			delivered, waiting, err := client.Pulls(ctx)
			switch {
			case err != nil || delivered > base:
				return
			case waiting == 0:
				fmt.Fprintf(console, "supervise: no machine has pulled from queue %q in %v; still waiting "+
					"(start one: supervise worker --connect URL --queue %s -- CMD)\n", cf.queue, pullsNotice, cf.queue)
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// abandon gives up the tasks out when the job is interrupted: a pool's are cancelled by the
// context; a queue's too (on the machines that hold them), and those left when the client
// closes fail with jetstream.ErrClosed, are cancelled on their machines and leave the queue.
func (j *job) abandon() {
	if j.client != nil {
		j.client.Close()
	}
}

// close ends the job: the pool's workers stop, or the run's results are removed.
func (j *job) close() error {
	if j.client != nil {
		j.stopMonitor()
		// Every task has ended by now: removing the run's results from the server is
		// housekeeping, and its failure (a server slow to answer) does not fail the job.
		if err := j.client.Close(); err != nil {
			j.log.Warn("supervise: the run's results stay on the server", "err", err)
		}
		j.nc.Close()
		return nil
	}
	err := j.pool.Close()
	j.stopMonitor()
	return err
}

// interrupted reports whether err is how a task ends when its job is interrupted: cancelled
// (waiting), cancelled by the pool's shutdown (running; the pool was started with ctx), or
// given up by the queue's client.
func interrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, supervisor.ErrPoolClosed) || errors.Is(err, jetstream.ErrClosed))
}

// window is how many tasks a job keeps out at most: local, what fills its pool (given); on a
// queue, enough for the pools of many machines, which are not ours to size it by.
func (j *job) window(local int) int {
	if j.client != nil {
		return 4096
	}
	return local
}

// pendingTask is a task submitted to a pool or to a queue.
type pendingTask[Out any] interface {
	ID() uint64
	Done() <-chan struct{}
	OnDone(func())
	Get(context.Context) (Out, error)
}

// submitTo submits one task of a job.
func submitTo[In, Out any](ctx context.Context, j *job, handler string, in In) pendingTask[Out] {
	if j.client != nil {
		return jetstream.Submit[In, Out](ctx, j.client, handler, in)
	}
	return supervisor.Bind[In, Out](j.pool, handler).Submit(ctx, in)
}

func serveCommand(pf *poolFlags) *cobra.Command {
	var (
		store, listen, token, cert, key string
		nkeys                           []string
		roles                           jetstream.Roles
		keys                            string
	)
	cmd := &cobra.Command{
		Use:   "serve [--store DIR] [--listen ADDR]",
		Short: "Run a NATS JetStream server for queues that span machines",
		Long: `serve runs a NATS JetStream server in this process (nothing to install), keeping its
streams in --store, so that a restart loses no task and no result. Worker machines join it with
'supervise worker --connect URL', and 'supervise run --connect URL' or 'supervise digest
--connect URL' submit to them. Any NATS server with JetStream (2.9 or later) will do instead.

It listens on loopback unless told otherwise. A server listening beyond loopback requires
credentials: --token (clients use nats://TOKEN@HOST:PORT) or --nkey (clients use
--nkey-seed); add --tls-cert and --tls-key to encrypt the traffic (clients use tls://HOST:PORT,
and --tls-ca when the certificate is not signed by a CA the system trusts).

--token and --nkey let a client do anything: publish tasks, and forge results too. For
machines and submitters you trust less than the work itself, give each role its own keys:
--submitter-nkey (may publish tasks and read and remove results; not publish a result) and
--machine-nkey (may take tasks and publish results; not publish a task), on the queues named
by --queue. Either kind of key signs in with --nkey-seed. --keys DIR makes one key of each
role in DIR the first time (and uses them after): hand DIR/submitter.nk to submitters and
DIR/machine.nk to machines. NATS permissions name streams, not runs, so a submitter can
fetch other runs' results, but they are sealed to their run (docs/protocol.md, section 11):
it reads nothing of them. It can still remove them, or publish tasks in another run's name,
and so make that run's tasks fail (never succeed falsely).

--ui ADDR serves a live web view of every machine of every queue at http://ADDR/: each
machine's cores, workers, tasks per second, failures and queue, from the figures every
'supervise worker' publishes each second.

It stops on SIGINT or SIGTERM, flushing its store.`,
		Example: `  supervise serve
  supervise serve --store /var/lib/supervise --listen 0.0.0.0:4222 --token "$(cat token)" --tls-cert cert.pem --tls-key key.pem
  supervise serve --listen 0.0.0.0:4222 --queue default --submitter-nkey "$(cat submitter.pub)" --machine-nkey "$(cat machine.pub)"
  supervise serve --listen 0.0.0.0:4222 --keys /etc/supervise/keys
  supervise serve --ui 127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := pf.logger()
			if err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("SUPERVISE_TOKEN")
			}
			issued, err := serveKeys(nkeys, &roles, keys) // said once the server runs
			if err != nil {
				return err
			}
			if st, err := os.Stat(store); err == nil && !st.IsDir() {
				return fmt.Errorf("--store %s: not a directory", store)
			}
			cfg := jetstream.ServerConfig{StoreDir: store, Listen: listen, Token: token, NKeys: nkeys, Roles: roles, Logger: log}
			if (cert == "") != (key == "") {
				return errors.New("--tls-cert and --tls-key go together")
			}
			if cert != "" {
				if cfg.TLS, err = server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, Timeout: 2}); err != nil {
					return fmt.Errorf("TLS: %w", err)
				}
				cfg.TLS.MinVersion = tls.VersionTLS12
			}
			var ui net.Listener
			if pf.ui != "" {
				if ui, err = listenUI(pf.ui); err != nil {
					return err
				}
			}
			ctx, _, stop := withSignals(cmd.Context())
			defer stop()
			srv, err := jetstream.StartServer(cfg)
			if err != nil {
				return err
			}
			if ui != nil {
				nc, err := srv.ConnectObserver()
				if err != nil {
					srv.Shutdown()
					return fmt.Errorf("--ui: %w", err)
				}
				defer nc.Close()
				machines, err := jetstream.WatchMachines(ctx, nc, "")
				if err != nil {
					srv.Shutdown()
					return fmt.Errorf("--ui: %w", err)
				}
				serveUI(ui, "supervise serve: every machine", queueMachines(machines))
			}
			scheme := "nats"
			if cfg.TLS != nil {
				scheme = "tls"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "supervise: JetStream server at %s://%s, store %s\n", scheme, listen, store)
			for _, line := range issued {
				fmt.Fprint(cmd.ErrOrStderr(), line)
			}
			<-ctx.Done()
			srv.Shutdown()
			return nil
		},
	}
	cmd.Flags().StringVar(&store, "store", defaultStore(), "keep the streams in `DIR`")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4222", "listen on `HOST:PORT`; beyond loopback, --token or nkeys are required")
	cmd.Flags().StringVar(&token, "token", "", "clients must present this token (default $SUPERVISE_TOKEN)")
	cmd.Flags().StringSliceVar(&nkeys, "nkey", nil, "let in the user with this nkey public key (U...), signing with its seed; repeatable")
	cmd.Flags().StringSliceVar(&roles.Submitters, "submitter-nkey", nil, "let in a submitter with this nkey public key: tasks in, results out, nothing else; repeatable")
	cmd.Flags().StringSliceVar(&roles.Machines, "machine-nkey", nil, "let in a worker machine with this nkey public key: tasks taken, results stored, nothing else; repeatable")
	cmd.Flags().StringVar(&keys, "keys", "", "issue a submitter key and a machine key in `DIR` (submitter.nk, machine.nk: give each its seed file), or use those there")
	cmd.Flags().StringSliceVar(&roles.Queues, "queue", nil, "the queues --submitter-nkey and --machine-nkey may use (default: default); repeatable")
	cmd.Flags().StringVar(&cert, "tls-cert", "", "serve TLS with the certificate in `FILE`")
	cmd.Flags().StringVar(&key, "tls-key", "", "and its key in `FILE`")
	return cmd
}

// defaultStore is $XDG_STATE_HOME/supervise/jetstream, or ~/.local/state/supervise/jetstream.
func defaultStore() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "supervise-jetstream"
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "supervise", "jetstream")
}

func workerCommand(pf *poolFlags) *cobra.Command {
	var cf clusterFlags
	var hold int
	var drain time.Duration
	cmd := &cobra.Command{
		Use:   "worker --connect URL [flags] [-- CMD [ARGS...]]",
		Short: "Join a queue on a NATS JetStream server as a worker machine",
		Long: `worker makes this machine a worker of a queue on a NATS JetStream server (supervise
serve, or any JetStream server): it runs a local pool, of its own workers (which serve digest)
or of CMD, a worker in any language that speaks docs/protocol.md, pulls tasks for it and
stores each result before it acks the task. All pool flags apply to the local pool.

Delivery is at least once. A task whose machine goes silent for --ack-wait (lost, killed,
cut off) is given to another machine; a task whose worker process dies under it is handed
back for another delivery; after --max-deliver deliveries it fails with its last error. A
task may therefore start more than once: handlers should be idempotent, or tolerate it. Its
outcome is recorded once, whoever finishes first.

Submitters send tasks in batches (as many as take about 50 ms of work, up to 256): --hold
counts deliveries, a task or a batch. --in-flight defaults to 32 here, as for run: tasks that
come in batches are mostly small.

On SIGINT or SIGTERM it stops taking tasks, lets those it holds finish for up to --drain, then
hands the rest back to the queue and exits.`,
		Example: `  supervise worker --connect nats://127.0.0.1:4222
  supervise --workers 16 worker --connect nats://TOKEN@head:4222 --queue scoring -- python3 model.py`,
		RunE: func(cmd *cobra.Command, command []string) error {
			if cf.connect == "" {
				return errors.New("worker: --connect URL is required")
			}
			if f := cmd.Flag("in-flight"); f != nil && !f.Changed {
				// 20,000 10-byte echoes, 2 workers, here: 11,900 tasks/s at 2, 25,300 at 32.
				pf.inFlight = 32
			}
			if len(command) > 0 && cmd.ArgsLenAtDash() != 0 {
				return errors.New("worker: put the worker command after --, as in: supervise worker --connect URL -- python3 worker.py")
			}
			cfg, err := pf.config()
			if err != nil {
				return err
			}
			log := cfg.Logger
			cfg.Command = command
			ctx, _, stop := withSignals(cmd.Context())
			defer stop()
			nc, err := cf.dial(log, "supervise worker")
			if err != nil {
				return err
			}
			defer nc.Close()
			if hold <= 0 {
				hold = 4 * pf.workers
			}
			// The pool outlives the signal: the tasks held finish on it during the drain.
			pool, err := supervisor.Start(context.WithoutCancel(ctx), cfg)
			if err != nil {
				return err
			}
			defer pool.Close()
			if pf.uiListener != nil {
				serveUI(pf.uiListener, "supervise worker: this machine", localMachine(pool))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "supervise: worker of queue %s at %s with %d workers\n", cf.queue, nc.ConnectedUrlRedacted(), pf.workers)
			err = jetstream.Serve(ctx, nc, pool, jetstream.ServeConfig{Config: cf.config(log), Hold: hold, Drain: drain, Metrics: cfg.Metrics})
			if err != nil {
				return err
			}
			return pool.Close()
		},
	}
	cf.add(cmd.Flags(), "work")
	cmd.Flags().IntVar(&hold, "hold", 0, "deliveries (a task, or a batch of them) this machine holds at once (default: 4 x workers)")
	cmd.Flags().DurationVar(&drain, "drain", 30*time.Second, "on SIGTERM, how long the tasks held may finish before they are handed back")
	return cmd
}
