package mbsha512

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// block_amd64.s is what gen.go writes: an edit to one without the other fails here.
func TestGeneratedAssemblyIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs gen.go")
	}
	want, err := exec.Command("go", "run", "gen.go").Output()
	if err != nil {
		t.Fatalf("go run gen.go: %v", err)
	}
	got, err := os.ReadFile("block_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("block_amd64.s differs from gen.go's output: run go run gen.go > block_amd64.s")
	}
}
