package digest

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A path the walk listed as a regular file may be something else by the time a worker opens
// it: a FIFO was hashed as empty input, a link to /dev/zero was read forever. The worker opens
// only regular files, without following links, and says what changed; files beside them are
// unaffected. Both ways of hashing (four files at once, one at a time) do so.
func TestDigestWorkerOpensOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	must(t, os.WriteFile(plain, []byte("plain\n"), 0o644))
	fifo := filepath.Join(dir, "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	zero := filepath.Join(dir, "zero")
	must(t, os.Symlink("/dev/zero", zero))
	want := sha512.Sum512([]byte("plain\n"))
	for _, hash := range []string{"", "go"} {
		t.Setenv("SUPERVISE_HASH", hash)
		ans, err := Files(context.Background(), Request{Paths: []string{fifo, plain, zero}, Whole: true})
		if err != nil {
			t.Fatal(err)
		}
		if ans.Failed[0] != errChanged.Error() || ans.Failed[2] != errLinkNow.Error() {
			t.Errorf("SUPERVISE_HASH=%q: failures %v", hash, ans.Failed)
		}
		if !bytes.Equal(ans.Sums[64:128], want[:]) {
			t.Errorf("SUPERVISE_HASH=%q: the plain file beside them: %x", hash, ans.Sums[64:128])
		}
	}
}

// A file whose reads come back short before its end (/proc's files say size 0 and come a
// page at a time) is read to its end: digest hashed the first 4,071 bytes of /proc/kallsyms.
func TestDigestReadsToTheEnd(t *testing.T) {
	const path = "/proc/kallsyms"
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 64<<10 {
		t.Skipf("%s: %d bytes, %v: not a file of many short reads here", path, len(data), err)
	}
	out, err := exec.Command("sha512sum", path).Output()
	must(t, err)
	for _, hash := range []string{"", "go"} {
		t.Setenv("SUPERVISE_HASH", hash)
		ans, err := Files(context.Background(), Request{Paths: []string{path}, Whole: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(ans.Sums); !strings.HasPrefix(string(out), got) || ans.Bytes < 64<<10 {
			t.Errorf("SUPERVISE_HASH=%q: %s after %d bytes, sha512sum says %s", hash, got, ans.Bytes, out)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
