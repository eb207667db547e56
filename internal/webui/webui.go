// Package webui serves the live web view of `supervise serve --ui` and `--ui` on a local job:
// one page, with no build step and nothing fetched from elsewhere (its HTML, CSS and script
// are embedded), that polls /api/state every second and draws every machine: its per-core
// bars, its workers with state, CPU and memory, tasks per second, failures by kind, the
// slowest tasks, and its queue's depth and dead letters.
//
// What a machine sends is not trusted: the page writes every string it shows as text (never
// as HTML), and Handler caps how much of each machine it passes on (see Sanitize).
package webui

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

//go:embed assets
var assets embed.FS

// Machine is what the page shows of one machine: a worker machine of a queue, or the local
// pool of a job.
type Machine struct {
	Name  string // host/pid
	Queue string // "" for a local job
	Stats supervisor.Stats
	// Queued and DeadLetters are the queue's messages waiting or taken, and its dead letters;
	// -1 when not known (a local job has no queue).
	Queued, DeadLetters int64
	Updated             time.Time // when the figures were taken
	Gone                bool      // the machine said it stopped
}

// Bounds on what one machine's figures may make the page draw.
const (
	maxCores   = 1024
	maxWorkers = 4096
	maxKinds   = 64
	maxText    = 200
)

// Sanitize caps m's lists and strings to what the page draws (a machine's figures come from
// the machine, which may be hostile): at most 1024 cores, 4096 workers, 64 kinds of failure,
// 10 slowest tasks, 200 bytes of any string.
func Sanitize(m Machine) Machine {
	st := &m.Stats
	m.Name, m.Queue, st.Containment = clip(m.Name), clip(m.Queue), clip(st.Containment)
	st.Cores = st.Cores[:min(len(st.Cores), maxCores)]
	st.Workers = st.Workers[:min(len(st.Workers), maxWorkers)]
	st.Slowest = st.Slowest[:min(len(st.Slowest), 10)]
	for i := range st.Workers {
		st.Workers[i].State = supervisor.WorkerState(clip(string(st.Workers[i].State)))
	}
	for i := range st.Slowest {
		st.Slowest[i].Handler = clip(st.Slowest[i].Handler)
	}
	if len(st.Failures) > maxKinds {
		kept := map[string]int{}
		for k, n := range st.Failures {
			if len(kept) < maxKinds {
				kept[clip(k)] = n
			}
		}
		st.Failures = kept
	}
	return m
}

func clip(s string) string {
	if len(s) > maxText {
		return s[:maxText]
	}
	return s
}

// Handler serves the page at / and the machines' figures at /api/state, read from machines
// at each request. title names the page.
func Handler(title string, machines func() []Machine) http.Handler {
	static, _ := fs.Sub(assets, "assets")
	v := &view{title: title, machines: machines, last: map[string]sample{}}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/state", v.state)
	return mux
}

type view struct {
	title    string
	machines func() []Machine
	mu       sync.Mutex
	last     map[string]sample // each machine's previous figures, for its rate
}

// sample is a machine's count of ended tasks at a time, and the rate worked out from it.
type sample struct {
	at    time.Time
	ended int
	rate  float64
}

// state is the JSON the page draws.
type state struct {
	Title    string         `json:"title"`
	Now      time.Time      `json:"now"`
	Machines []machineState `json:"machines"`
}

type machineState struct {
	Name           string               `json:"name"`
	Queue          string               `json:"queue"`
	Updated        time.Time            `json:"updated"`
	Gone           bool                 `json:"gone"`
	Containment    string               `json:"containment"`
	TasksPerSecond float64              `json:"tasksPerSecond"`
	Done           int                  `json:"done"`
	Failed         int                  `json:"failed"`
	Failures       map[string]int       `json:"failures"`
	Queued         int64                `json:"queued"`
	DeadLetters    int64                `json:"deadLetters"`
	Cores          []coreState          `json:"cores"`
	Workers        []workerState        `json:"workers"`
	Slowest        []supervisorTaskTime `json:"slowest"`
}

type coreState struct {
	Busy   float64 `json:"busy"`
	User   float64 `json:"user"`
	System float64 `json:"system"`
}

type workerState struct {
	Slot        int     `json:"slot"`
	ID          int     `json:"id"`
	Pid         int     `json:"pid"`
	State       string  `json:"state"`
	Utilization float64 `json:"utilization"`
	CPUSeconds  float64 `json:"cpuSeconds"`
	RSS         uint64  `json:"rss"`
	Tasks       int     `json:"tasks"`
	Failed      int     `json:"failed"`
	Restarts    int     `json:"restarts"`
	Processes   int     `json:"processes"`
}

type supervisorTaskTime struct {
	ID       uint64  `json:"id"`
	Handler  string  `json:"handler"`
	WorkerID int     `json:"worker"`
	Seconds  float64 `json:"seconds"`
}

func (v *view) state(w http.ResponseWriter, _ *http.Request) {
	machines := v.machines()
	out := state{Title: v.title, Now: time.Now(), Machines: make([]machineState, 0, len(machines))}
	v.mu.Lock()
	seen := map[string]bool{}
	for _, m := range machines {
		m = Sanitize(m)
		row := v.machine(m)
		key := m.Queue + "\x00" + m.Name
		seen[key] = true
		ended := row.Done + row.Failed
		prev, ok := v.last[key]
		switch {
		case !ok || m.Stats.Taken.Before(prev.at) || ended < prev.ended:
			v.last[key] = sample{at: m.Stats.Taken, ended: ended}
		case m.Stats.Taken.Sub(prev.at) >= 500*time.Millisecond:
			rate := float64(ended-prev.ended) / m.Stats.Taken.Sub(prev.at).Seconds()
			v.last[key] = sample{at: m.Stats.Taken, ended: ended, rate: rate}
			row.TasksPerSecond = rate
		default:
			row.TasksPerSecond = prev.rate
		}
		out.Machines = append(out.Machines, row)
	}
	for key := range v.last {
		if !seen[key] {
			delete(v.last, key)
		}
	}
	v.mu.Unlock()
	sort.Slice(out.Machines, func(i, j int) bool {
		a, b := out.Machines[i], out.Machines[j]
		return a.Queue < b.Queue || a.Queue == b.Queue && a.Name < b.Name
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// machine is m as the page draws it.
func (v *view) machine(m Machine) machineState {
	st := m.Stats
	ms := machineState{Name: m.Name, Queue: m.Queue, Updated: m.Updated, Gone: m.Gone, Containment: st.Containment,
		Failures: st.Failures, Queued: m.Queued, DeadLetters: m.DeadLetters,
		Cores: make([]coreState, len(st.Cores)), Workers: make([]workerState, len(st.Workers)), Slowest: make([]supervisorTaskTime, len(st.Slowest))}
	if ms.Failures == nil {
		ms.Failures = map[string]int{}
	}
	for i, c := range st.Cores {
		ms.Cores[i] = coreState{Busy: c.Busy(), User: c.User, System: c.System}
	}
	for i, w := range st.Workers {
		ms.Workers[i] = workerState{Slot: w.Slot, ID: w.ID, Pid: w.Pid, State: string(w.State), Utilization: w.Utilization,
			CPUSeconds: w.CPU.Seconds(), RSS: w.RSS, Tasks: w.Tasks, Failed: w.Failed, Restarts: w.Restarts, Processes: w.Processes}
		ms.Done += w.Tasks
	}
	for _, n := range ms.Failures {
		ms.Failed += n
	}
	for i, t := range st.Slowest {
		ms.Slowest[i] = supervisorTaskTime{ID: t.ID, Handler: t.Handler, WorkerID: t.WorkerID, Seconds: t.Took.Seconds()}
	}
	return ms
}
