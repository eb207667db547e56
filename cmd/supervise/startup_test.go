package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/channel"
)

// An unknown flag before the subcommand is reported as an unknown flag: cobra took
// --frobnicate for a flag with a value and said `unknown command "x"`.
func TestUnknownLeadingFlag(t *testing.T) {
	for _, args := range [][]string{
		{"--frobnicate", "digest", "x"},
		{"--frobnicate=3", "digest", "x"},
		{"-j", "2", "-Z", "digest", "x"},
		{"digest", "--frobnicate", "x"},
	} {
		_, stderr, code := run(t, args...)
		if code != 2 || !strings.Contains(stderr, "unknown flag") || !strings.Contains(stderr, "-") {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and an unknown flag", args, code, stderr)
		}
	}
}

// The scan of leading flags lets every known form through, values included.
func TestLeadingFlagsKnown(t *testing.T) {
	root := &cobra.Command{Use: "supervise"}
	root.PersistentFlags().IntP("workers", "j", 1, "")
	root.PersistentFlags().BoolP("quiet", "q", false, "")
	root.PersistentFlags().String("memory-limit", "", "")
	for _, args := range [][]string{
		{"-j", "4", "digest"}, {"-j4", "digest"}, {"-qj", "4", "digest"}, {"-qj4", "run"},
		{"--workers", "4", "digest"}, {"--workers=4", "digest"}, {"--memory-limit", "-1", "digest"},
		{"--quiet", "digest", "--frobnicate"}, {"--help"}, {"-h"}, {"--version"}, {"--", "x"},
	} {
		if err := unknownLeadingFlag(root, args); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	for _, args := range [][]string{{"-x", "digest"}, {"-qx", "digest"}, {"--frob", "digest"}, {"-j", "4", "--frob=1", "digest"}} {
		if err := unknownLeadingFlag(root, args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestVersion(t *testing.T) {
	stdout, stderr, code := run(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "supervise ") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// An output path that cannot be written is refused before the job starts, not after it.
func TestOutputPathsCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))
	for _, path := range []string{filepath.Join(dir, "no", "such", "dir.json"), dir} {
		stdout, stderr, code := run(t, "--report-json", path, "digest", dir)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "--report-json") {
			t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 naming --report-json and no digest", code, stdout, stderr)
		}
	}
}

// An ordinary command given to run is named as no worker well before --start-timeout, and
// the error names the flag, not the library's field.
func TestRunOfAnOrdinaryCommand(t *testing.T) {
	_, stderr, code := runCLI(t, "x\n", "-j", "1", "--start-timeout", "5s", "run", "--", "cat")
	for _, want := range []string{`no hello from ["cat"] yet`, "supervise exec", "--start-timeout", "docs/protocol.md"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if code != 2 || strings.Contains(stderr, "supervise: supervise:") || strings.Contains(stderr, "Config.StartTimeout") {
		t.Errorf("exit %d; stderr:\n%s", code, stderr)
	}
}

// conformance exits 2, as its help says, for a command that cannot run or is no worker, and
// gives up on the hello after 3 s rather than 10 s for each of 19 checks.
func TestConformanceOfNoWorker(t *testing.T) {
	for _, command := range [][]string{{"/nonexistent/cmd"}, {"cat"}} {
		stdout, stderr, code := run(t, append([]string{"conformance", "--"}, command...)...)
		if code != 2 || !strings.Contains(stdout, "FAIL  hello") || strings.Count(stdout, "\n") != 2 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 after the hello check alone", command, code, stdout, stderr)
		}
	}
}

// A worker of another protocol version is told apart from a program that is no worker: the
// error names both versions and says to update one, not to use exec.
func TestRunOfAWorkerOfAnotherVersion(t *testing.T) {
	var frame bytes.Buffer
	hello, err := channel.Marshal(channel.Hello{Protocol: channel.ProtocolVersion + 1, Pid: 1, Language: "sh"})
	must(t, err)
	must(t, channel.NewConn(strings.NewReader(""), &frame, channel.Options{}).Send(channel.Message{Kind: channel.KindHello, Payload: hello}))
	path := filepath.Join(t.TempDir(), "hello")
	must(t, os.WriteFile(path, frame.Bytes(), 0o644))
	_, stderr, code := runCLI(t, "x\n", "-j", "1", "run", "--", "sh", "-c", `cat "$1"; exec cat >/dev/null`, "sh", path)
	want := fmt.Sprintf("speaks protocol version %d, this parent speaks %d", channel.ProtocolVersion+1, channel.ProtocolVersion)
	if code != 2 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "update the older") || strings.Contains(stderr, "supervise exec") {
		t.Errorf("exit %d; stderr:\n%s", code, stderr)
	}
}
