package supervisor

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

// unread says what a pipe holds: the watchdog holds a kill back while an answer waits there.
func TestUnread(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n := unread(r); n != 0 {
		t.Fatalf("an empty pipe: %d bytes unread", n)
	}
	w.Write([]byte("12345"))
	if n := unread(r); n != 5 {
		t.Fatalf("5 bytes written: %d unread", n)
	}
}

// fakeProbe is what the watchdog sees of a process, as a test scripts it.
type fakeProbe struct {
	cpuAt    func(ms int) time.Duration // CPU time of the tree at a time; nil: none used
	rssAt    func(ms int) uint64
	unreadAt func(ms int) int
	ms       int // the time of the current look, set by the test
	rssLooks int
}

func (p *fakeProbe) cpu() time.Duration {
	if p.cpuAt == nil {
		return 0
	}
	return p.cpuAt(p.ms)
}

func (p *fakeProbe) rss() (uint64, error) {
	p.rssLooks++
	if p.rssAt == nil {
		return 0, nil
	}
	return p.rssAt(p.ms), nil
}

func (p *fakeProbe) unread() int {
	if p.unreadAt == nil {
		return 0
	}
	return p.unreadAt(p.ms)
}

// The watchdog's decisions at exact times, without processes: a worker last heard from at 0,
// looked at every 10 ms of an injected clock; when is it first killed, and what for.
func TestWatchdog(t *testing.T) {
	t0 := time.Unix(1000, 0)
	grows := func(until int) func(int) time.Duration { // CPU used until a time, none after
		return func(ms int) time.Duration { return time.Duration(min(ms, until)) * time.Millisecond }
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		probe  fakeProbe
		call   bool // a call was sent at 0
		killAt int  // ms of the first kill; -1: none within 5 s
		why    func(error) bool
		charge bool // the kill is charged to the call
	}{
		{name: "silent and idle: hung at HangTimeout exactly", cfg: Config{HangTimeout: time.Second},
			killAt: 1000, why: func(err error) bool { return errors.Is(err, ErrHung) }},
		{name: "silent but using CPU: hung HangTimeout after the CPU stops", cfg: Config{HangTimeout: time.Second},
			probe: fakeProbe{cpuAt: grows(2000)}, killAt: 3000, why: func(err error) bool { return errors.Is(err, ErrHung) }},
		{name: "silent with output unread: held for HangTimeout more", cfg: Config{HangTimeout: time.Second},
			probe: fakeProbe{unreadAt: func(int) int { return 10 }}, killAt: 2000, why: func(err error) bool { return errors.Is(err, ErrHung) }},
		{name: "no hang limit: never hung", cfg: Config{}, killAt: -1},
		{name: "over the hard memory limit", cfg: Config{MemoryHardLimit: 100, MemoryInterval: 100 * time.Millisecond},
			probe: fakeProbe{rssAt: func(ms int) uint64 { return uint64(ms / 10) }}, killAt: 1010, // sampled at 10, 110, ... 1010 ms
			why: func(err error) bool {
				var m *MemoryLimitError
				return errors.As(err, &m) && m.RSS == 101 && m.Limit == 100
			}},
		{name: "a call past its time limit and grace", cfg: Config{TaskTimeout: 300 * time.Millisecond, CancelGrace: 200 * time.Millisecond},
			call: true, killAt: 500, charge: true, why: func(err error) bool {
				var te *TimeoutError
				return errors.As(err, &te) && te.Hard && te.Limit == 300*time.Millisecond
			}},
		{name: "an overdue call whose answer waits unread: held for the grace", cfg: Config{TaskTimeout: 300 * time.Millisecond, CancelGrace: 200 * time.Millisecond},
			probe: fakeProbe{unreadAt: func(ms int) int { return 10 }}, call: true, killAt: 700, charge: true,
			why: func(err error) bool { return errors.Is(err, ErrTimeout) }},
		{name: "a time limit, no call", cfg: Config{TaskTimeout: 300 * time.Millisecond, CancelGrace: 200 * time.Millisecond}, killAt: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newWatchdog(&tc.cfg)
			l := newLedger(1)
			var c *task
			if tc.call {
				c = &task{id: 7, handler: "h", ctx: context.Background(), done: make(chan struct{})}
				l.send(c, t0)
			}
			pr := tc.probe
			killAt := -1
			var kill *killOrder
			var cancelled []int
			for ms := 10; ms <= 5000 && kill == nil; ms += 10 {
				pr.ms = ms
				v := d.check(t0.Add(time.Duration(ms)*time.Millisecond), t0, &l, &pr)
				if len(v.cancels) > 0 {
					cancelled = append(cancelled, ms)
				}
				if v.kill != nil {
					kill, killAt = v.kill, ms
				}
			}
			if killAt != tc.killAt {
				t.Fatalf("first kill at %d ms, want %d (%+v)", killAt, tc.killAt, kill)
			}
			if kill == nil {
				return
			}
			if !tc.why(kill.why) {
				t.Errorf("killed for %v (%s)", kill.why, kill.reason)
			}
			if (kill.task == c && c != nil) != tc.charge {
				t.Errorf("charged to %v, want the call: %v", kill.task, tc.charge)
			}
			if tc.call && !slices.Equal(cancelled, []int{int(tc.cfg.TaskTimeout / time.Millisecond)}) {
				t.Errorf("cancels sent at %v ms, want once at the time limit", cancelled)
			}
		})
	}
}

// Over the soft memory limit the worker is recycled, once; memory is looked at only every
// MemoryInterval.
func TestWatchdogSoftMemory(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := newWatchdog(&Config{MemorySoftLimit: 100, MemoryInterval: 100 * time.Millisecond})
	pr := fakeProbe{rssAt: func(ms int) uint64 { return 150 }}
	l := newLedger(1)
	var recycled []int
	for ms := 10; ms <= 1000; ms += 10 {
		pr.ms = ms
		v := d.check(t0.Add(time.Duration(ms)*time.Millisecond), t0.Add(time.Duration(ms)*time.Millisecond), &l, &pr)
		if v.kill != nil {
			t.Fatalf("killed at %d ms: %v", ms, v.kill.why)
		}
		if v.recycle {
			if v.rss != 150 {
				t.Errorf("recycled with rss %d", v.rss)
			}
			recycled = append(recycled, ms)
		}
	}
	if !slices.Equal(recycled, []int{10}) {
		t.Errorf("recycled at %v ms, want once, at the first look", recycled)
	}
	if pr.rssLooks != 10 {
		t.Errorf("memory looked at %d times in 1 s, want 10 (every MemoryInterval)", pr.rssLooks)
	}
}

// The watchdog looks often enough to hold each limit within a quarter of it, and a call's
// time limit within 50 ms.
func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, 250 * time.Millisecond},
		{Config{HangTimeout: 30 * time.Second, CancelGrace: 5 * time.Second}, 250 * time.Millisecond},
		{Config{TaskTimeout: 100 * time.Millisecond, CancelGrace: 5 * time.Second}, 25 * time.Millisecond},
		{Config{TaskTimeout: time.Millisecond}, 5 * time.Millisecond},
		{Config{TaskTimeout: time.Second, CancelGrace: 5 * time.Second}, 50 * time.Millisecond}, // a future ends at most 50 ms late
		{Config{MemoryHardLimit: 1, MemoryInterval: 20 * time.Millisecond}, 20 * time.Millisecond},
	} {
		d := newWatchdog(&tc.cfg)
		if got := d.interval(); got != tc.want {
			t.Errorf("%+v: every %v, want %v", tc.cfg, got, tc.want)
		}
	}
}
