package webui

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

// What one machine sends is capped before the page draws it.
func TestSanitizeCaps(t *testing.T) {
	m := Sanitize(Machine{Name: strings.Repeat("n", 10000), Stats: supervisor.Stats{
		Cores:   make([]supervisor.CoreStats, 5000),
		Workers: make([]supervisor.WorkerStats, 10000),
		Slowest: make([]supervisor.TaskTiming, 50),
		Failures: func() map[string]int {
			f := map[string]int{}
			for i := range 1000 {
				f[strings.Repeat("k", 300)+string(rune('a'+i%26))+strings.Repeat("x", i)] = i
			}
			return f
		}(),
	}})
	st := m.Stats
	if len(m.Name) != maxText || len(st.Cores) != maxCores || len(st.Workers) != maxWorkers || len(st.Slowest) != 10 || len(st.Failures) > maxKinds {
		t.Errorf("name %d, cores %d, workers %d, slowest %d, kinds %d: not capped", len(m.Name), len(st.Cores), len(st.Workers), len(st.Slowest), len(st.Failures))
	}
	for k := range st.Failures {
		if len(k) > maxText {
			t.Errorf("a failure kind of %d bytes", len(k))
		}
	}
}

// Tasks per second come from the tasks ended between two of a machine's samples.
func TestStateRate(t *testing.T) {
	t0 := time.Now()
	done := 100
	taken := t0
	h := Handler("t", func() []Machine {
		return []Machine{{Name: "m", Queued: -1, DeadLetters: -1, Stats: supervisor.Stats{Taken: taken,
			Workers: []supervisor.WorkerStats{{Tasks: done}}, Failures: map[string]int{"died": 1}}}}
	})
	get := func() machineState {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/state", nil))
		var st state
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || len(st.Machines) != 1 {
			t.Fatalf("state: %v %s", err, rec.Body)
		}
		return st.Machines[0]
	}
	if m := get(); m.TasksPerSecond != 0 || m.Done != 100 || m.Failed != 1 {
		t.Errorf("first sample: %+v", m)
	}
	done, taken = 300, t0.Add(2*time.Second)
	if m := get(); m.TasksPerSecond != 100 {
		t.Errorf("200 tasks in 2 s: %v tasks/s", m.TasksPerSecond)
	}
	if m := get(); m.TasksPerSecond != 100 { // the same sample again: the rate stays
		t.Errorf("the same sample: %v tasks/s", m.TasksPerSecond)
	}
}
