package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestWalk(t *testing.T) {
	root := t.TempDir()
	files := map[string]int{
		"top.txt":           10,
		"a/one":             100,
		"a/b/two":           2000,
		"a/b/three":         3000,
		"a/b/c/d/deep":      7,
		"e/empty":           0,
		"f/g/h/i/j/k/l/end": 1,
	}
	for name, size := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not counted: a symbolic link (to a directory, so following it would count a/ twice).
	if err := os.Symlink("a", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(`ROOT: 13 directories, 7 files, 5118 bytes
          5000 bytes      2 files  ROOT/a/b
           100 bytes      1 files  ROOT/a
`, "ROOT", root)
	names := strings.ReplaceAll("ROOT: 13 directories, 7 files, 0 bytes\n", "ROOT", root)
	for _, mode := range [][]string{{"-workers", "3"}, {"-serial"}, {"-names", "-workers", "2"}, {"-names", "-serial"}} {
		out := proctest.RunMain(t, ".", append(mode, "-top", "2", root)...)
		w := want
		if mode[0] == "-names" {
			w = names + "  " // then the top directories, by name: no sizes
		}
		if !strings.HasPrefix(out, w) || mode[0] != "-names" && out != want {
			t.Errorf("walk %v:\n%s\nwant:\n%s", mode, out, want)
		}
	}
}
