package jetstream_test

import (
	"context"
	"github.com/supervise-dev/supervise/internal/pooltest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// roleConn connects with a new nkey of its own, returning its public key's connection and a
// record of the errors the server sent it (permission violations come that way).
type roleConn struct {
	pub    string
	seed   string // file
	mu     sync.Mutex
	errs   []string
	forged []string // subjects it published on to be refused
}

func newRole(t *testing.T) *roleConn {
	user, err := nkeys.CreateUser()
	must(t, err)
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	file := filepath.Join(t.TempDir(), "user.nk")
	must(t, os.WriteFile(file, seed, 0o600))
	return &roleConn{pub: pub, seed: file}
}

func (r *roleConn) connect(t *testing.T, url string) *nats.Conn {
	opt, err := nats.NkeyOptionFromSeed(r.seed)
	must(t, err)
	nc, err := nats.Connect(url, opt, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.errs = append(r.errs, err.Error())
	}))
	must(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// refused waits until the server has refused a publish on subject.
func (r *roleConn) refused(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	r.mu.Lock()
	r.forged = append(r.forged, subject)
	r.mu.Unlock()
	must(t, nc.Publish(subject, []byte("forged")))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		errs := strings.Join(r.errs, "\n")
		r.mu.Unlock()
		if strings.Contains(errs, "Permissions Violation for Publish to \""+subject+"\"") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a publish on %s was not refused (errors: %q)", subject, errs)
		}
	}
}

// With Roles, a submitter and a machine each sign in with a key of their own role: the queue
// works, and neither can publish what the other role, or the server, publishes (a forged
// result, a forged advisory, a task from a machine).
func TestRoles(t *testing.T) {
	sub, mach := newRole(t), newRole(t)
	cfg := testConfig()
	srv, err := jetstream.StartServer(jetstream.ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		Roles: jetstream.Roles{Queues: []string{cfg.Queue}, Submitters: []string{sub.pub}, Machines: []string{mach.pub}}})
	must(t, err)
	defer srv.Shutdown()

	mnc := mach.connect(t, srv.URL())
	pool, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 1, Command: []string{os.Args[0], "worker-of", "roles"},
		StartTimeout: pooltest.StartTimeout})
	must(t, err)
	defer pool.Close()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- jetstream.Serve(ctx, mnc, pool, jetstream.ServeConfig{Config: cfg}) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("machine: %v", err)
		}
	}()

	snc := sub.connect(t, srv.URL())
	c, err := jetstream.NewClient(context.Background(), snc, cfg)
	must(t, err)
	defer c.Close()
	tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := jetstream.Submit[string, string](tctx, c, "echo", "by role").Get(tctx); err != nil || got != "by role" {
		t.Fatalf("a task through the roles: %q, %v", got, err)
	}

	sub.refused(t, snc, "supervise."+cfg.Queue+".results."+c.Run()+".2")
	sub.refused(t, snc, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SUPERVISE_"+cfg.Queue+"_TASKS.workers")
	mach.refused(t, mnc, "supervise."+cfg.Queue+".tasks")
	mach.refused(t, mnc, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SUPERVISE_"+cfg.Queue+"_TASKS.workers")
	if err := c.Close(); err != nil { // the run's results are purged: a submitter may
		t.Errorf("closing the submitter: %v", err)
	}
	for _, r := range []*roleConn{sub, mach} { // nothing but the forgeries was refused
		r.mu.Lock()
		for _, e := range r.errs {
			if !slices.ContainsFunc(r.forged, func(s string) bool { return strings.Contains(e, `"`+s+`"`) }) {
				t.Errorf("refused: %s", e)
			}
		}
		r.mu.Unlock()
	}
}
