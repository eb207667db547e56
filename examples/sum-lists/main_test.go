package main

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestSumLists(t *testing.T) {
	const lists, n = 64, 1_000_000
	var want uint64
	for i := range lists {
		s, _ := sum(context.Background(), List{Seed: uint64(i), N: n})
		want += s
	}
	out := proctest.RunMain(t, ".", "-lists", fmt.Sprint(lists), "-n", fmt.Sprint(n), "-workers", "2")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if first := fmt.Sprintf("%d lists of %d numbers: sum %d", lists, n, want); lines[0] != first {
		t.Fatalf("first line %q, want %q\n%s", lines[0], first, out)
	}
	for _, re := range []string{`(?m)^serial: \S+$`, `(?m)^pool: +\S+ with 2 workers: speedup \d+\.\d\dx$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matches %s in\n%s", re, out)
		}
	}
	cores := regexp.MustCompile(`(?m)^core \d+: +\d+% busy while the pool ran$`).FindAllString(out, -1)
	if len(cores) != runtime.NumCPU() && !strings.Contains(out, "less than a sampling interval") {
		t.Errorf("%d core lines, the machine has %d cores:\n%s", len(cores), runtime.NumCPU(), out)
	}
	done := 0
	for _, m := range regexp.MustCompile(`(?m)^worker \d: (\d+) lists, \d+\.\d\ds CPU$`).FindAllStringSubmatch(out, -1) {
		var k int
		fmt.Sscan(m[1], &k)
		done += k
	}
	if done != lists {
		t.Errorf("the workers summed %d lists in all, want %d:\n%s", done, lists, out)
	}
}
