package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/supervise-dev/supervise/internal/webui"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// listenUI takes the address of --ui at once, so that one in use fails the command before it
// starts anything.
func listenUI(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--ui %s: %w", addr, err)
	}
	return ln, nil
}

// serveUI serves the live web view (internal/webui) of machines on ln until the process
// exits, and says where on the console.
func serveUI(ln net.Listener, title string, machines func() []webui.Machine) {
	srv := &http.Server{Handler: webui.Handler(title, machines), ReadHeaderTimeout: readHeaderTimeout}
	fmt.Fprintf(console, "supervise: live view at http://%s/\n", ln.Addr())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(console, "supervise: --ui %s: %v\n", ln.Addr(), err)
		}
	}()
}

// localMachine is the view of a job's own pool: one machine, this one, with no queue.
func localMachine(pool *supervisor.Pool) func() []webui.Machine {
	host, _ := os.Hostname()
	name := fmt.Sprintf("%s/%d", host, os.Getpid())
	return func() []webui.Machine {
		st := pool.Stats()
		return []webui.Machine{{Name: name, Stats: st, Queued: -1, DeadLetters: -1, Updated: st.Taken}}
	}
}

// queueMachines is the view of the worker machines of every queue, from what they publish.
func queueMachines(w *jetstream.Machines) func() []webui.Machine {
	return func() []webui.Machine {
		list := w.List()
		out := make([]webui.Machine, len(list))
		for i, m := range list {
			out[i] = webui.Machine{Name: m.Machine, Queue: m.Queue, Stats: m.Stats, Queued: m.Queued,
				DeadLetters: m.DeadLetters, Updated: m.Stats.Taken, Gone: m.Gone}
		}
		return out
	}
}
