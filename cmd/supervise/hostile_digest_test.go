package main

import (
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Roots that are not directories or plain regular files are read by supervise itself, to
// their end, as sha512sum reads them: /dev/stdin (the parent's stdin, which a worker does not
// have) printed the hash of empty input.
func TestDigestStdinAndFIFORoots(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	must(t, os.WriteFile(file, []byte("from stdin\n"), 0o644))
	sum := sha512.Sum512([]byte("from stdin\n"))
	wantSum := hex.EncodeToString(sum[:])
	stdout, stderr, code := runCLI(t, "from stdin\n", "digest", "/dev/stdin")
	if code != 0 || stdout != wantSum+"  /dev/stdin\n" {
		t.Errorf("digest /dev/stdin: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	fifo := filepath.Join(dir, "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	go func() { // the writer: open blocks until digest opens the FIFO to read
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.WriteString("from stdin\n")
			f.Close()
		}
	}()
	stdout, stderr, code = run(t, "digest", file, fifo)
	if want := wantSum + "  " + file + "\n" + wantSum + "  " + fifo + "\n"; code != 0 || stdout != want {
		t.Errorf("digest FILE FIFO: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
