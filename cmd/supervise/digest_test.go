package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

var binary string // the supervise binary, built once by TestMain

func TestMain(m *testing.M) {
	var cleanup func()
	var err error
	if binary, cleanup, err = proctest.Build("."); err != nil {
		panic(err)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// oddTree writes a tree with every kind of name and file that digest must get right.
func oddTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("new\nline.txt", []byte("newline in the name\n"))
	write(`back\slash.txt`, []byte("backslash\n"))
	write("carriage\rreturn", []byte("cr\n"))
	write("with spaces/and more spaces.txt", []byte("spaces\n"))
	write("ünïcødé/日本語.txt", []byte("unicode\n"))
	write("-leading-dash", []byte("dash\n"))
	write("empty", nil)
	write("sub/empty2", nil)
	write("a-c", []byte("sorts before a/ as a path, after it as a walk\n"))
	write("a/b", []byte("b\n"))
	big := make([]byte, 9<<20+17) // alone in its task, and more than one read
	for i := range big {
		big[i] = byte(i * 7)
	}
	write("big/blob.bin", big)
	for i := range 3 { // with blob.bin, four big files: one task, when workers hash four at once
		write(fmt.Sprintf("big/more-%d.bin", i), big[:1<<20+i*4099])
	}
	for i := range 600 { // several batches of small files
		write(filepath.Join("many", string(rune('a'+i%26)), strings.Repeat("x", i%7)+string(rune('0'+i%10))+"-"+strconv.Itoa(i)), bytes.Repeat([]byte{byte(i)}, i*13))
	}
	must(t, os.Symlink("big/blob.bin", filepath.Join(root, "link-to-file")))
	must(t, os.Symlink("a", filepath.Join(root, "link-to-dir")))
	must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	must(t, err)
	t.Cleanup(func() { l.Close() })
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// want is what sha512sum prints for the regular files under root, in sorted walk order.
func want(t *testing.T, root string) []byte {
	t.Helper()
	out, err := exec.Command("sha512sum", append([]string{"--"}, regularFiles(t, root)...)...).Output()
	must(t, err)
	return out
}

// regularFiles are the regular files under root, in lexical walk order (digest's order).
func regularFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	}))
	return files
}

// runCLI runs supervise with stdin and returns what it printed and its exit status.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// run runs supervise, whose workers are supervise itself: none may remain afterwards.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code = runCLI(t, "", args...)
	proctest.AssertNoProcessRuns(t, binary) // its workers died with it
	return stdout, stderr, code
}

func TestDigestMatchesSha512sum(t *testing.T) {
	root := oddTree(t)
	expected := want(t, root)
	for _, args := range [][]string{
		{"--workers", "3", "digest", root},
		{"digest", "--workers", "2", root},
		{"-j", "1", "digest", root},
		{"digest", "--batch-files", "7", "--batch-bytes", "1", root}, // every task cut short
		// The walk at most 3 items ahead of the output: the window slides, and is copied, often.
		{"digest", "--batch-files", "2", "--max-ahead", "3", root},
	} {
		out, errOut, code := run(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		if out != string(expected) {
			t.Fatalf("%v: output differs from sha512sum's\n got:\n%s\nwant:\n%s", args, out, expected)
		}
	}
	// A root spelled with ./ and a trailing slash is kept as spelled, like find.
	t.Chdir(root)
	out, _, _ := run(t, "digest", "./a/")
	if want := "./a/b\n"; !strings.HasSuffix(out, want) {
		t.Fatalf("got %q, want a line ending in %q", out, want)
	}
}

func TestDigestErrors(t *testing.T) {
	root := oddTree(t)
	missing := filepath.Join(root, "no-such-file")
	out, errOut, code := run(t, "digest", filepath.Join(root, "a"), missing, filepath.Join(root, "empty"))
	cmd := exec.Command("sha512sum", missing)
	var se bytes.Buffer
	cmd.Stderr = &se
	_ = cmd.Run()
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if wantErr := strings.Replace(se.String(), "sha512sum:", "supervise:", 1); errOut != wantErr {
		t.Fatalf("stderr %q, want %q", errOut, wantErr)
	}
	if strings.Count(out, "\n") != 2 {
		t.Fatalf("the other files were not hashed:\n%s", out)
	}
	if os.Geteuid() != 0 { // root reads anything
		p := filepath.Join(root, "a", "b")
		must(t, os.Chmod(p, 0))
		_, errOut, code = run(t, "digest", root)
		if code != 1 || !strings.Contains(errOut, "supervise: "+p+": Permission denied\n") {
			t.Fatalf("unreadable file: exit %d, stderr %q", code, errOut)
		}
	}
	_, errOut, code = run(t, "digest")
	if code != 2 || !strings.Contains(errOut, "requires at least 1 arg") {
		t.Fatalf("no path: exit %d, stderr %q", code, errOut)
	}
}

func TestDigestIsDeterministic(t *testing.T) {
	root := oddTree(t)
	a, _, _ := run(t, "--workers", "2", "digest", root, root+"/many")
	b, _, _ := run(t, "--workers", "3", "digest", root, root+"/many")
	if a != b || a == "" {
		t.Fatal("two runs printed different bytes")
	}
}

func TestSumLine(t *testing.T) {
	sum := bytes.Repeat([]byte{0xab}, 64)
	hex := strings.Repeat("ab", 64)
	cases := map[string]string{
		"plain":     hex + "  plain\n",
		"a\\b":      "\\" + hex + "  a\\\\b\n",
		"new\nline": "\\" + hex + "  new\\nline\n",
		"cr\rx":     "\\" + hex + "  cr\\rx\n",
	}
	for name, want := range cases {
		if got := string(sumLine(sum, name)); got != want {
			t.Errorf("%q: got %q, want %q", name, got, want)
		}
	}
}

// A file that overruns --timeout fails alone, as a time limit: the small files batched with
// it in one task are hashed. (They used to fail with it, "Canceled: context canceled".)
// /proc/self/pagemap is a file of 0 bytes by its size that reads for minutes.
func TestDigestTimeoutFailsOnlyTheSlowFile(t *testing.T) {
	if _, err := os.Stat("/proc/self/pagemap"); err != nil {
		t.Skip("no /proc/self/pagemap here")
	}
	dir := t.TempDir()
	for i := range 20 {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), []byte(strconv.Itoa(i)), 0o644))
	}
	// 5s: a margin for the small files on a loaded machine; pagemap takes far longer.
	stdout, stderr, code := runCLI(t, "", "--workers", "1", "--timeout", "5s", "--cancel-grace", "5s", "digest", dir, "/proc/self/pagemap")
	if expected := string(want(t, dir)); stdout != expected || code != 1 {
		t.Errorf("exit %d, stdout:\n%s\nwant exit 1 and:\n%s", code, stdout, expected)
	}
	if stderr != "supervise: /proc/self/pagemap: time limit exceeded (5s)\n" {
		t.Errorf("stderr %q, want only pagemap's time limit", stderr)
	}
}

// digest --joblog logs a line per file, keyed by its path; --resume-failed hashes again only
// the files that failed; --halt now,fail=1 prints nothing after the first failure.
func TestDigestJoblogResumeHalt(t *testing.T) {
	dir := t.TempDir()
	a, missing, b := filepath.Join(dir, "a"), filepath.Join(dir, "late"), filepath.Join(dir, "b")
	must(t, os.WriteFile(a, []byte("a"), 0o644))
	must(t, os.WriteFile(b, []byte("b"), 0o644))
	log := filepath.Join(dir, "digest.log")
	out, errOut, code := run(t, "digest", "--joblog", log, a, missing, b)
	past, err := readJobLog(log)
	must(t, err)
	if code != 1 || strings.Count(out, "\n") != 2 || !maps.Equal(past.byKey, map[string]bool{a: false, missing: true, b: false}) {
		t.Fatalf("exit %d, stdout %q, stderr %q, log %v", code, out, errOut, past.byKey)
	}
	must(t, os.WriteFile(missing, []byte("late"), 0o644))
	out, errOut, code = run(t, "digest", "--joblog", log, "--resume-failed", a, missing, b)
	if wantLine, _ := exec.Command("sha512sum", missing).Output(); code != 0 || out != string(wantLine) {
		t.Errorf("--resume-failed: exit %d, stdout %q (stderr %q); want only %q", code, out, errOut, wantLine)
	}
	if out, _, code = run(t, "digest", "--joblog", log, "--resume", a, missing, b); code != 0 || out != "" {
		t.Errorf("--resume: exit %d, stdout %q; want nothing hashed", code, out)
	}
	out, _, code = run(t, "digest", "--halt", "now,fail=1", filepath.Join(dir, "nothing"), a, b)
	if code != 1 || out != "" {
		t.Errorf("--halt now,fail=1: exit %d, stdout %q; want nothing after the first file's failure", code, out)
	}
}

// --tag, -z and both print what sha512sum prints with them, odd names included; "-" hashes
// standard input, named "-".
func TestDigestFormatsAndStdin(t *testing.T) {
	root := oddTree(t)
	files := regularFiles(t, root)
	for _, flags := range [][]string{{"--tag"}, {"-z"}, {"--tag", "-z"}} {
		wantOut, err := exec.Command("sha512sum", append(append(flags, "--"), files...)...).Output()
		must(t, err)
		out, errOut, code := run(t, append(append([]string{"digest"}, flags...), root)...)
		if code != 0 || out != string(wantOut) {
			t.Errorf("%q: exit %d, stderr %q\ngot  %q\nwant %q", flags, code, errOut, out, wantOut)
		}
	}
	cmd := exec.Command("sha512sum", "-")
	cmd.Stdin = strings.NewReader("from stdin\n")
	wantOut, err := cmd.Output()
	must(t, err)
	out, errOut, code := runCLI(t, "from stdin\n", "digest", "-")
	if code != 0 || out != string(wantOut) {
		t.Errorf("digest -: exit %d, stderr %q, got %q, want %q", code, errOut, out, wantOut)
	}
}

// --files-from lists the roots, one a line or (-0) NUL-ended, from a file or stdin, as find
// -print0 gives them: the output is sha512sum's for those files; an empty entry is an error
// in its place; PATHs beside it are refused.
func TestDigestFilesFrom(t *testing.T) {
	root := oddTree(t)
	files := regularFiles(t, root)
	wantOut, err := exec.Command("sha512sum", append([]string{"--"}, files...)...).Output()
	must(t, err)
	list := filepath.Join(t.TempDir(), "list")
	must(t, os.WriteFile(list, []byte(strings.Join(files, "\x00")+"\x00"), 0o644))
	if out, errOut, code := run(t, "digest", "--files-from", list, "-0"); code != 0 || out != string(wantOut) {
		t.Errorf("--files-from FILE -0: exit %d, stderr %q\ngot  %q\nwant %q", code, errOut, out, wantOut)
	}
	found, err := exec.Command("find", root, "-type", "f", "-print0").Output()
	must(t, err)
	out, errOut, code := runCLI(t, string(found), "digest", "--files-from", "-", "-0")
	if code != 0 || sortedString(out) != sortedString(string(wantOut)) {
		t.Errorf("find -print0 | digest --files-from - -0: exit %d, stderr %q\ngot  %q", code, errOut, out)
	}
	out, errOut, code = runCLI(t, files[0]+"\n\n", "digest", "--files-from", "-")
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "entry 2 of the list: an empty file name") {
		t.Errorf("an empty entry: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := run(t, "digest", "--files-from", list, root); code != 2 || !strings.Contains(errOut, "no PATH beside it") {
		t.Errorf("--files-from with a PATH: exit %d, stderr %q", code, errOut)
	}
}

// -x does not descend into a directory on another file system (a tmpfs mounted in the
// tree, where this test may mount one); without it, the files there are hashed.
func TestDigestOneFileSystem(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "here"), []byte("here"), 0o644))
	mnt := filepath.Join(root, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	if err := exec.Command("mount", "-t", "tmpfs", "tmpfs", mnt).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	must(t, os.WriteFile(filepath.Join(mnt, "there"), []byte("there"), 0o644))
	out, errOut, code := run(t, "digest", "-x", root)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "/here\n") {
		t.Errorf("-x: exit %d, stderr %q, stdout %q; want only the file on the root's file system", code, errOut, out)
	}
	if out, _, _ := run(t, "digest", root); strings.Count(out, "\n") != 2 {
		t.Errorf("without -x: stdout %q, want both files", out)
	}
}

// --exclude takes .gitignore lines, matched from each PATH: globs, a trailing / for
// directories (not entered), a leading / to anchor, ! to take a path back.
func TestDigestExclude(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"a/x.log", "a/keep.log", "a/k.txt", "b/sub/y.log", "node_modules/m.js", "top.txt", "a/top.txt"} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, f), []byte(f), 0o644))
	}
	out, errOut, code := run(t, "digest", "--exclude", "*.log", "--exclude", "!keep.log", "--exclude", "node_modules/", "--exclude", "/top.txt", root)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.TrimPrefix(line[130:], root+"/"))
	}
	if want := []string{"a/k.txt", "a/keep.log", "a/top.txt"}; code != 0 || !slices.Equal(got, want) {
		t.Errorf("exit %d, stderr %q: hashed %q, want %q", code, errOut, got, want)
	}
}
