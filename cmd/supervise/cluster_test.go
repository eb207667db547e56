package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/supervise-dev/supervise/internal/proctest"
)

// background starts supervise with args and waits for the first line of its stderr to match
// ready; at the end of the test it is sent SIGTERM and must exit 0.
func background(t *testing.T, ready string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	r := bufio.NewReader(stderr)
	line, _ := r.ReadString('\n')
	if !strings.Contains(line, ready) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("supervise %q: first line %q, want one with %q", args, line, ready)
	}
	go io.Copy(io.Discard, r) // the rest, until it exits
	t.Cleanup(func() { stopBackground(t, cmd) })
	return cmd
}

// stopBackground sends SIGTERM and checks a clean exit (once; later calls do nothing).
func stopBackground(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if cmd.ProcessState != nil {
		return
	}
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Errorf("supervise %q after SIGTERM: %v", cmd.Args[1:], err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveForTest runs supervise serve on a port of its own and returns its URL.
func serveForTest(t *testing.T) (string, *exec.Cmd) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := background(t, "JetStream server at", "serve", "--store", t.TempDir(), "--listen", addr)
	return "nats://" + addr, cmd
}

// supervise serve, two machines running supervise worker (its own workers, then a Python
// worker on another queue), and digest and run submitting to them: digest prints what
// sha512sum prints, run ends every line once; all stop cleanly on SIGTERM and leave nothing.
func TestDigestAndRunAcrossMachines(t *testing.T) {
	root := oddTree(t)
	url, server := serveForTest(t)
	var machines []*exec.Cmd
	for range 2 {
		machines = append(machines, background(t, "worker of queue default", "--workers", "2", "worker", "--connect", url))
	}
	stdout, stderr, code := runCLI(t, "", "digest", "--connect", url, root)
	if code != 0 || stdout != string(want(t, root)) {
		t.Errorf("digest --connect: exit %d, stderr %q; output equal to sha512sum's: %v", code, stderr, stdout == string(want(t, root)))
	}

	py, script := pythonScript(t, "e2e_worker.py")
	machines = append(machines, background(t, "worker of queue py", "--workers", "2", "worker", "--connect", url, "--queue", "py", "--", py, script))
	stdout, stderr, code = runCLI(t, numbered(2000), "run", "--connect", url, "--queue", "py", "--call", "work", "--keep-order")
	var wantOut strings.Builder
	for i := 1; i <= 2000; i++ {
		if i%997 != 0 {
			fmt.Fprintf(&wantOut, "ok %d\n", i)
		}
	}
	if code != 1 || stdout != wantOut.String() {
		t.Errorf("run --connect: exit %d (want 1), output as expected: %v", code, stdout == wantOut.String())
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "supervise: line 997: queue py: task 997 (work) on ") || !strings.Contains(lines[1], "1994 is a multiple of 997") {
		t.Errorf("run --connect: stderr %q, want the errors of lines 997 and 1994", stderr)
	}

	for _, m := range machines {
		stopBackground(t, m)
	}
	stopBackground(t, server)
	proctest.AwaitNoProcessRuns(t, 5*time.Second, binary)
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, script)
}

// A machine told to stop hands back the task it cannot finish within --drain, and the task
// goes at once (not --ack-wait later) to the next machine.
func TestWorkerHandsBackOnSIGTERM(t *testing.T) {
	url, _ := serveForTest(t)
	py, script := pythonScript(t, "e2e_worker.py")
	first := background(t, "worker of queue", "--workers", "1", "worker", "--connect", url, "--ack-wait", "1m", "--drain", "300ms", "--", py, script)
	run := exec.Command(binary, "run", "--connect", url, "--ack-wait", "1m", "--call", "work")
	run.Stdin = strings.NewReader("2500\n") // sleeps for an hour
	var out, errOut strings.Builder
	run.Stdout, run.Stderr = &out, &errOut
	must(t, run.Start())
	awaitHeld(t, url, 1)
	stopBackground(t, first) // exits 0 after the drain, handing the task back
	background(t, "worker of queue", "--workers", "1", "--timeout", "500ms", "--cancel-grace", "200ms", "worker", "--connect", url, "--ack-wait", "1m", "--", py, script)
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		run.Process.Kill()
		t.Fatal("run did not end: the task was not handed back")
	}
	if !regexp.MustCompile(`^supervise: line 1: queue default: task 1 \(work\) on \S+, delivery 2: timeout: `).MatchString(errOut.String()) {
		t.Errorf("stderr %q, want line 1 failing at its time limit on its second delivery", errOut.String())
	}
}

// awaitHeld waits until the machines of queue default hold n tasks, as the server counts
// them (delivered, not acked).
func awaitHeld(t *testing.T, url string, n int) {
	t.Helper()
	awaitConsumer(t, url, fmt.Sprintf("the machines hold %d tasks", n), func(c *jetstream.ConsumerInfo) bool { return c.NumAckPending == n })
}

// awaitDelivered waits until queue default's consumer has delivered n tasks or more.
func awaitDelivered(t *testing.T, url string, n uint64) {
	t.Helper()
	awaitConsumer(t, url, fmt.Sprintf("%d tasks delivered", n), func(c *jetstream.ConsumerInfo) bool { return c.Delivered.Consumer >= n })
}

// awaitConsumer waits up to a minute until queue default's consumer is as ok says.
func awaitConsumer(t *testing.T, url, what string, ok func(*jetstream.ConsumerInfo) bool) {
	t.Helper()
	nc, err := nats.Connect(url)
	must(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		c, err := js.Consumer(ctx, "SUPERVISE_default_TASKS", "workers")
		if err == nil {
			if info, err := c.Info(ctx); err == nil && ok(info) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not yet after a minute: %s", what)
		case <-time.After(20 * time.Millisecond): // polling the server's count: it sends no event
		}
	}
}

// serve --submitter-nkey and --machine-nkey: a machine and a submitter sign in with keys of
// their roles (--nkey-seed), and the queue works as with one credential for all.
func TestRolesAcrossMachines(t *testing.T) {
	keys := map[string]string{} // role -> seed file
	pubs := map[string]string{}
	for _, role := range []string{"submitter", "machine"} {
		user, err := nkeys.CreateUser()
		must(t, err)
		pubs[role], _ = user.PublicKey()
		seed, _ := user.Seed()
		keys[role] = filepath.Join(t.TempDir(), role+".nk")
		must(t, os.WriteFile(keys[role], seed, 0o600))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	server := background(t, "JetStream server at", "serve", "--store", t.TempDir(), "--listen", addr,
		"--submitter-nkey", pubs["submitter"], "--machine-nkey", pubs["machine"])
	url := "nats://" + addr
	py, script := pythonScript(t, "e2e_worker.py")
	machine := background(t, "worker of queue default", "--workers", "1", "worker", "--connect", url, "--nkey-seed", keys["machine"], "--", py, script)
	stdout, stderr, code := runCLI(t, "1\n2\n", "run", "--connect", url, "--nkey-seed", keys["submitter"], "--call", "work", "--keep-order")
	if code != 0 || stdout != "ok 1\nok 2\n" {
		t.Errorf("run --connect with a submitter's key: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// serve --keys issues a key of each role in a directory, and uses them after a restart.
	keyDir := filepath.Join(t.TempDir(), "keys")
	for range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		issuing := background(t, "JetStream server at", "serve", "--store", t.TempDir(), "--listen", addr, "--keys", keyDir)
		m := background(t, "worker of queue default", "--workers", "1", "worker", "--connect", "nats://"+addr, "--nkey-seed", filepath.Join(keyDir, "machine.nk"), "--", py, script)
		stdout, stderr, code := runCLI(t, "3\n", "run", "--connect", "nats://"+addr, "--nkey-seed", filepath.Join(keyDir, "submitter.nk"), "--call", "work")
		if code != 0 || stdout != "ok 3\n" {
			t.Errorf("run --connect with a key of serve --keys: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		stopBackground(t, m)
		stopBackground(t, issuing)
	}
	// A submitter's key cannot serve as a machine: it may not take tasks.
	_, stderr, code = runCLI(t, "", "worker", "--connect", url, "--nkey-seed", keys["submitter"], "--", py, script)
	if code == 0 || !strings.Contains(strings.ToLower(stderr), "permission") {
		t.Errorf("worker --connect with a submitter's key: exit %d, stderr %q; want a permissions error", code, stderr)
	}
	stopBackground(t, machine)
	stopBackground(t, server)
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, script)
}

// run --connect on a queue no machine serves says so after a few seconds (it waited
// without a word), and goes on waiting until interrupted.
func TestConnectSaysWhenNoMachinePulls(t *testing.T) {
	url, _ := serveForTest(t)
	cmd := exec.Command(binary, "run", "--connect", url, "--queue", "nobody", "--call", "work")
	cmd.Stdin = strings.NewReader("1\n")
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	var got string
	for line := range lines {
		if strings.Contains(line, `no machine has pulled from queue "nobody"`) {
			got = line
			break
		}
	}
	if got == "" || cmd.ProcessState != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no word of the missing machines (%q)", got)
	}
	must(t, cmd.Process.Signal(syscall.SIGINT))
	go func() {
		for range lines {
		}
	}()
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, want exit 130", err)
	}
}

// digest --connect takes relative paths: the machines get them made absolute (they run
// elsewhere), and the output shows them as given, as sha512sum's does.
func TestDigestConnectRelativePaths(t *testing.T) {
	root := oddTree(t)
	url, _ := serveForTest(t)
	background(t, "worker of queue default", "--workers", "1", "worker", "--connect", url) // in this test's directory
	var stdout, stderr strings.Builder
	cmd := exec.Command(binary, "digest", "--connect", url, filepath.Base(root))
	cmd.Dir, cmd.Stdout, cmd.Stderr = filepath.Dir(root), &stdout, &stderr
	err := cmd.Run()
	sums := exec.Command("sh", "-c", `find "$1" -type f -print0 | sort -z | xargs -0 sha512sum --`, "_", filepath.Base(root))
	sums.Dir = filepath.Dir(root)
	wantOut, werr := sums.Output()
	must(t, werr)
	if err != nil || sortedString(stdout.String()) != sortedString(string(wantOut)) {
		t.Fatalf("%v: stderr %q\nstdout:\n%s\nwant:\n%s", err, stderr.String(), stdout.String(), wantOut)
	}
}

// sortedString is s's lines, sorted: the order of a walk is not find's.
func sortedString(s string) string {
	l := strings.SplitAfter(s, "\n")
	slices.Sort(l)
	return strings.Join(l, "")
}

// A machine killed with SIGKILL in the middle of a run, as a user meets it: supervise serve,
// two machines, run --connect, all separate processes. The live machine hands the dead one's
// deliveries back within seconds, so the run ends long before the ack wait (2 minutes here).
// Before the fix it ended at the ack wait: a machine's heartbeat listed the deliveries it
// held up to a second earlier, which, with tasks of 50 ms, were long acked.
func TestDeadMachineNoticedFromTheCLI(t *testing.T) {
	worker, clean, err := proctest.Build("../../examples/conformance-worker")
	must(t, err)
	t.Cleanup(clean)
	url, _ := serveForTest(t)
	var machines []*exec.Cmd
	for range 2 {
		machines = append(machines, background(t, "worker of queue default", "--workers", "2", "worker", "--connect", url, "--ack-wait", "2m", "--", worker))
	}
	run := exec.Command(binary, "run", "--connect", url, "--ack-wait", "2m", "--call", "sleep", "--json")
	run.Stdin = strings.NewReader(strings.Repeat("0.05\n", 400))
	var out, errOut strings.Builder
	run.Stdout, run.Stderr = &out, &errOut
	must(t, run.Start())
	awaitDelivered(t, url, 100) // both machines are busy
	must(t, machines[0].Process.Kill())
	machines[0].Wait()
	killed := time.Now()
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case err := <-done:
		if err != nil || strings.Count(out.String(), "\n") != 400 {
			t.Fatalf("run: %v, %d results; stderr %q", err, strings.Count(out.String(), "\n"), errOut.String())
		}
	case <-time.After(time.Minute): // half the ack wait: a margin for a loaded machine over the seconds it takes
		run.Process.Kill()
		<-done
		t.Fatalf("the run did not end a minute after a machine died: its tasks waited for the ack wait")
	}
	t.Logf("the run ended %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	for _, m := range machines[1:] {
		stopBackground(t, m)
	}
	proctest.AwaitNoProcessRuns(t, 5*time.Second, worker) // the dead machine's workers too
}
