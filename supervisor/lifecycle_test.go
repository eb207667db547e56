package supervisor

import "testing"

// A worker's phase only moves forward, and its end is expected only once it was told to exit.
func TestPhases(t *testing.T) {
	for _, tc := range []struct {
		path     []phase
		moved    []bool
		expected bool
	}{
		{[]phase{phaseDraining, phaseStopping, phaseEnded}, []bool{true, true, true}, false},
		{[]phase{phaseDraining, phaseStopping}, []bool{true, true}, true},
		{[]phase{phaseDraining, phaseReady, phaseDraining}, []bool{true, false, false}, false},
		{[]phase{phaseKilled}, []bool{true}, false},
		{[]phase{phaseDraining, phaseStopping, phaseKilled}, []bool{true, true, true}, true}, // a hang while exiting
		{[]phase{phaseKilled, phaseStopping}, []bool{true, false}, false},                    // killed: never told to exit
	} {
		w := &worker{p: &Pool{backlog: newBacklog()}}
		w.setIdle(true)
		for i, to := range tc.path {
			during := w.phase
			if moved := w.enter(to); moved != tc.moved[i] {
				t.Errorf("%v: enter(%v) moved %v, want %v", tc.path, to, moved, tc.moved[i])
			}
			if to == phaseKilled {
				w.cause.during = during
			}
		}
		if got := w.expected(); got != tc.expected {
			t.Errorf("%v: expected() %v, want %v", tc.path, got, tc.expected)
		}
		if w.idle || w.p.backlog.idle != 0 {
			t.Errorf("%v: still counted idle", tc.path)
		}
	}
}
