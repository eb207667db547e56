package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/child"
	"golang.org/x/sys/unix"
)

// Fault is the input of the "misbehave" handler: the kind of misbehaviour, and N, the number
// of the task (the "ok" kind returns 2*N).
type Fault struct {
	Kind string
	N    int
	MiB  int // for "eat"
}

// Kinds are the misbehaviours, each one way a worker goes wrong; "ok" and "panic" leave the
// worker well.
var Kinds = []string{"crash", "spin", "sleep", "freeze", "eat", "garbage", "oversize", "exit0", "grandchildren"}

// misbehave does what f.Kind says. Every kind but "ok" and "panic" leaves the worker broken in
// its own way; the pool must kill it (or see it dead), fail only this call, and replace it.
func misbehave(ctx context.Context, f Fault) (int, error) {
	switch f.Kind {
	case "ok":
		return 2 * f.N, nil
	case "panic": // the SDK turns a panic into the call's error; the worker goes on
		panic(fmt.Sprintf("misbehave: panic in task %d", f.N))
	case "crash": // dies in the middle of the call
		fmt.Fprintln(os.Stderr, "misbehave: crashing on purpose")
		os.Exit(3)
	case "exit0": // exits early, and "successfully", with the call unanswered
		os.Exit(0)
	case "spin": // hangs in a busy loop, deaf to its cancel (heartbeats go on: a time limit catches it)
		for x := 0; ; x++ {
			if x%(1<<20) == 0 {
				runtime.Gosched()
			}
		}
	case "sleep": // hangs asleep, deaf to its cancel
		time.Sleep(time.Hour)
	case "freeze": // stops the whole process: no heartbeat either (hung)
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		time.Sleep(time.Hour)
	case "eat": // allocates and touches memory until something stops it
		var kept [][]byte
		for {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			kept = append(kept, b)
			if f.MiB > 0 && len(kept)*16 >= f.MiB {
				<-ctx.Done() // hold it
				return len(kept), ctx.Err()
			}
		}
	case "garbage": // writes bytes that are not a frame onto the frame stream
		// 4-byte length 5, then 0xc1 (a byte msgpack never uses) and 4 more: a decode error.
		writeFrames([]byte{0, 0, 0, 5, 0xc1, 'j', 'u', 'n', 'k'})
		time.Sleep(time.Hour)
	case "oversize": // announces a frame one byte over the limit
		limit, _ := strconv.Atoi(os.Getenv("SUPERVISE_MAX_FRAME"))
		writeFrames(binary.BigEndian.AppendUint32(nil, uint32(limit)+1))
		time.Sleep(time.Hour)
	case "grandchildren": // starts two children that ignore SIGTERM, then hangs deaf to cancels
		var pids []int
		for range 2 {
			cmd := exec.Command("sh", "-c", `trap "" TERM; exec sleep 300`)
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			pids = append(pids, cmd.Process.Pid)
		}
		fmt.Fprintln(os.Stderr, "misbehave: grandchildren", pids[0], pids[1])
		time.Sleep(time.Hour)
	case "escape": // starts a child that leaves the process group and session (setsid) and
		// ignores SIGTERM and SIGHUP, then hangs deaf to cancels. Only a cgroup holds it: not
		// in Kinds, since on a machine without cgroups it outlives the pool (for 300 s).
		cmd := exec.Command("setsid", "sh", "-c", `trap "" TERM HUP; exec sleep 300`)
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		fmt.Fprintln(os.Stderr, "misbehave: escaped", cmd.Process.Pid)
		time.Sleep(time.Hour)
	case "forkbomb": // forks sleepers until fork fails (or 1,000 of them), says how many
		// started, then hangs deaf to cancels. Only a cgroup's pids.max bounds it: not in
		// Kinds either.
		var pids []string
		var err error
		for range 1000 {
			var pid int
			if pid, err = syscall.ForkExec("/bin/sleep", []string{"sleep", "300"}, nil); err != nil {
				break
			}
			pids = append(pids, strconv.Itoa(pid))
		}
		fmt.Fprintf(os.Stderr, "misbehave: forked %d (%v): %s\n", len(pids), err, strings.Join(pids, " "))
		time.Sleep(time.Hour)
	}
	return 0, fmt.Errorf("misbehave: unknown kind %q", f.Kind)
}

// writeFrames writes b straight onto the frame stream to the parent. The Go SDK keeps it away
// from handlers (fmt.Print goes to stderr, stdin is /dev/null), so this finds it by hand: the
// one pipe among the open files, past the standard three, that is open for writing and is not
// stderr.
func writeFrames(b []byte) {
	var errOut syscall.Stat_t
	syscall.Fstat(2, &errOut)
	for fd := 3; fd < 1024; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO || st.Ino == errOut.Ino {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || flags&unix.O_ACCMODE != unix.O_WRONLY {
			continue // the read end of the calls
		}
		syscall.Write(fd, b)
		return
	}
	fmt.Fprintln(os.Stderr, "misbehave: no frame stream found")
}

func init() {
	child.Handle("misbehave", misbehave)
}
