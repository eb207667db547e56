package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/child"
)

// The test binary is its own worker: TestMain registers the handlers below and calls
// child.Main, which serves and exits when the binary was started by a pool.
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISE_TEST_MODE") {
	case "serve-direct": // a worker binary run by hand, without the cookie
		if err := child.Serve(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hello-v2": // a worker of a future protocol version
		c := channel.NewConn(os.Stdin, os.Stdout, channel.Options{})
		hello, _ := channel.Marshal(channel.Hello{Protocol: 2, Pid: os.Getpid(), Language: "go"})
		_ = c.Send(channel.Message{Kind: channel.KindHello, Payload: hello})
		_, _ = c.Recv() // until EOF
		os.Exit(0)
	}
	child.Handle("echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	child.Handle("square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	child.Handle("pid", func(context.Context, struct{}) (int, error) { return os.Getpid(), nil })
	child.Handle("fail", func(_ context.Context, msg string) (int, error) { return 0, errors.New(msg) })
	child.Handle("panic", func(_ context.Context, msg string) (int, error) { panic(msg) })
	child.Handle("print", func(_ context.Context, msg string) (string, error) {
		fmt.Println(msg) // must land on stderr, not in the frame stream
		return "printed", nil
	})
	child.Handle("sleep", func(ctx context.Context, ms int) (int, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// block writes "pid grandchild-pid" to the FIFO at path (the test's signal that the task is
	// running), then waits for its context. With spawn, it first starts a grandchild sleep.
	child.Handle("block", func(ctx context.Context, in struct {
		FIFO  string
		Spawn bool
	}) (int, error) {
		gpid := 0
		if in.Spawn {
			cmd := exec.Command("sleep", "300")
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			gpid = cmd.Process.Pid
		}
		f, err := os.OpenFile(in.FIFO, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(f, "%d %d\n", os.Getpid(), gpid)
		f.Close()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	child.Main()
	os.Exit(m.Run())
}

// assertGone fails unless no process with pid, and no process in its group, is left alive
// (zombies waiting for init to reap them count as gone).
func assertGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if st := procState(pid); st != 'Z' && st != 0 {
				t.Errorf("process %d is still there (state %c)", pid, st)
			}
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if pgrp, _ := strconv.Atoi(f[2]); slices.Contains(pids, pgrp) {
			t.Errorf("process %d (%s) of worker group %d is still alive", pid, strings.Fields(string(b))[1], pgrp)
		}
	}
}

// procState is the state letter of a process in /proc, or 0 if unknown.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) == 0 {
		return 0
	}
	return f[0][0]
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
