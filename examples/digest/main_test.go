package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// TestDigest checks the example against sha512sum itself, on files listed in walk order.
func TestDigest(t *testing.T) {
	root := t.TempDir()
	files := []string{"a/b/one", "a/b/two", "a/big", "empty", "z/last"} // walk order
	for i, name := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, i*i*100_000) // up to 1.6 MB; "empty" is the one with none
		for j := range data {
			data[j] = byte(j * (i + 1))
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files[i] = path
	}
	if err := os.Symlink("a", filepath.Join(root, "link")); err != nil { // not followed
		t.Fatal(err)
	}
	want, err := exec.Command("sha512sum", files...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if out := proctest.RunMain(t, ".", root); out != string(want) {
		t.Fatalf("output:\n%s\nsha512sum:\n%s", out, want)
	}
}
