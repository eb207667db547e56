package digest

import (
	"context"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The worker's two ways of hashing a task, four files at once (digestLanes, on CPUs with
// AVX2) and one after another, give the same answer: sums, failures, deferred big files,
// where a budget stops the task, bytes hashed. The sizes straddle SHA-512's block, the lanes'
// read size and the big-file size.
func TestDigestLanesMatchOneAtATime(t *testing.T) {
	if !useLanes() {
		t.Skip("no multi-buffer SHA-512 on this CPU: digest hashes one file at a time")
	}
	dir := t.TempDir()
	var paths []string
	sizes := []int{0, 1, 127, 128, 129, 4096, laneBuffer - 1, laneBuffer, laneBuffer + 1, 2 * laneBuffer,
		BigFile - 1, BigFile, BigFile + 5, 3*BigFile + 77, 300, 5000}
	for i, size := range sizes {
		p := filepath.Join(dir, fmt.Sprintf("f%02d", i))
		data := make([]byte, size)
		for k := range data {
			data[k] = byte(k*31 + i)
		}
		must(t, os.WriteFile(p, data, 0o644))
		paths = append(paths, p)
		if i == 4 {
			paths = append(paths, filepath.Join(dir, "missing"), dir) // ENOENT, EISDIR
		}
	}
	reqs := []Request{
		{Paths: paths},
		{Paths: paths, Whole: true},
		{Paths: paths, Budget: 3 * laneBuffer}, // stops early: Done < len(Paths)
	}
	var lanes []Answer
	for _, req := range reqs {
		ans, err := Files(context.Background(), req)
		must(t, err)
		lanes = append(lanes, ans)
	}
	t.Setenv("SUPERVISE_HASH", "go")
	for k, req := range reqs {
		serial, err := Files(context.Background(), req)
		must(t, err)
		ans := lanes[k]
		if req.Budget > 0 { // the two count a budget differently (files in flight): both stop early
			if ans.Done >= len(paths) || serial.Done >= len(paths) || ans.Done == 0 {
				t.Fatalf("budget %d: %d and %d of %d files attempted", req.Budget, ans.Done, serial.Done, len(paths))
			}
		} else if !reflect.DeepEqual(ans, serial) {
			t.Fatalf("whole=%v:\nfour at once:  %+v\none at a time: %+v", req.Whole, ans, serial)
		}
		for i := range ans.Done {
			if ans.Failed[i] != "" || ans.Deferred[i] > 0 {
				continue
			}
			data, err := os.ReadFile(paths[i])
			must(t, err)
			if want := sha512.Sum512(data); string(ans.Sums[64*i:64*i+64]) != string(want[:]) {
				t.Fatalf("%s: wrong digest", paths[i])
			}
		}
		if len(ans.Failed) != 2 && ans.Done == len(paths) {
			t.Fatalf("failures %v, want the missing file and the directory", ans.Failed)
		}
	}
}
