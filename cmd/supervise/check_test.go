package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runBoth runs sha512sum and supervise digest with the same arguments, stdin and locale, and
// fails unless their stdout, their stderr (but for the program's name) and their exit statuses
// are the same.
func runBoth(t *testing.T, stdin, locale string, args ...string) {
	t.Helper()
	runOne := func(name string, args ...string) (string, string, int) {
		var o, e bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "LC_ALL="+locale)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return o.String(), e.String(), cmd.ProcessState.ExitCode()
	}
	wantOut, wantErr, wantCode := runOne("sha512sum", append([]string{"-c"}, args...)...)
	out, errOut, code := runOne(binary, append([]string{"digest", "-c"}, args...)...)
	errOut = strings.ReplaceAll(errOut, "supervise: ", "sha512sum: ")
	if out != wantOut || errOut != wantErr || code != wantCode {
		t.Errorf("-c %q (LC_ALL=%s):\nexit %d, want %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s\nwant:\n%s", args, locale, code, wantCode, out, wantOut, errOut, wantErr)
	}
}

// A sums file covering the odd-names tree, in both forms, with files changed, missing,
// unreadable and links, and improperly formatted lines of every kind: digest -c prints what
// sha512sum -c prints, byte for byte, and exits as it does, with each of its flags.
func TestCheckMatchesSha512sum(t *testing.T) {
	root := oddTree(t)
	files := regularFiles(t, root)
	sums := want(t, root)
	tagged, err := exec.Command("sha512sum", "--tag", "--", files[0], files[len(files)-1]).Output()
	must(t, err)
	anyHex := strings.Repeat("ab", 64)
	bad := strings.Join([]string{
		"# a comment",
		"",
		"not a sums line",
		anyHex[:127] + "  " + files[0],   // a digit short
		anyHex + "   ",                   // no name... but a space is one
		`\` + anyHex + `  a\qb`,          // an escape that is not one
		anyHex + " " + files[0],          // BSD md5 -r's form, after the standard one
		"SHA512 (" + files[0] + ") = 12", // a short tagged sum
		anyHex + "  -",                   // standard input
		anyHex + "  " + files[1] + "\r",  // CRLF
		"SHA512 (" + root + "/a/b) = " + strings.ToUpper(hexSum512("b\n")),
	}, "\n") + "\n"
	// Then the tree changes.
	must(t, os.WriteFile(filepath.Join(root, "a/b"), []byte("changed\n"), 0o644))
	must(t, os.Remove(filepath.Join(root, "empty")))
	must(t, os.Remove(filepath.Join(root, "new\nline.txt")))
	must(t, os.Remove(filepath.Join(root, "sub/empty2")))
	must(t, os.Mkdir(filepath.Join(root, "sub/empty2"), 0o755)) // Is a directory
	must(t, os.Remove(filepath.Join(root, "-leading-dash")))
	must(t, os.Symlink("-leading-dash", filepath.Join(root, "-leading-dash"))) // a loop
	if os.Geteuid() != 0 {
		must(t, os.Chmod(filepath.Join(root, "a-c"), 0)) // Permission denied
	}
	sumsFile := filepath.Join(t.TempDir(), "SUMS")
	must(t, os.WriteFile(sumsFile, append(append(sums, tagged...), bad...), 0o644))
	for _, locale := range []string{"C", "C.UTF-8"} {
		for _, flags := range [][]string{
			{}, {"--quiet"}, {"--status"}, {"-w"}, {"--strict"}, {"--ignore-missing"},
			{"--ignore-missing", "--strict", "-w"}, {"--status", "--quiet"}, {"--warn", "--status"}, {"--quiet", "--warn"},
		} {
			runBoth(t, "from stdin\n", locale, append(flags, sumsFile)...)
		}
	}
	// Several sums files (one missing), standard input as one, and as the only one.
	good := filepath.Join(t.TempDir(), "GOOD")
	must(t, os.WriteFile(good, tagged, 0o644))
	runBoth(t, string(tagged), "C.UTF-8", good, filepath.Join(root, "no such sums"), "-", sumsFile)
	runBoth(t, string(tagged), "C.UTF-8")
	runBoth(t, "", "C.UTF-8", root) // a directory: "read error"
	runBoth(t, "", "C.UTF-8", "--ignore-missing", good)
}

func hexSum512(s string) string {
	sum := sha512.Sum512([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Lines built at random from the pieces sums lines are made of: digest -c accepts and
// rejects exactly the lines sha512sum -c does, and names their files as it does.
func TestCheckRandomLinesMatchSha512sum(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, name := range []string{"a", "b c", `x\y`, "e'f", "g:h", "é", "a)", "(a"} {
		must(t, os.WriteFile(name, []byte("hello\n"), 0o644))
	}
	must(t, os.Mkdir("d", 0o755))
	must(t, os.Symlink("nowhere", "dangling"))
	h := hexSum512("hello\n")
	names := []string{"a", "b c", `x\y`, "e'f", "g:h", "é", "a)", "(a", "d", "dangling", "missing", "-", "\xff", ""}
	pieces := append([]string{" ", "\t", `\`, "SHA512", "SHA512 ", "(", ")", " = ", "=", "*", "  ", "\r",
		"#", h, strings.ToUpper(h), h[:127], h + "0", `\n`, `\r`, `\\`, `\x`, "\x00"}, names...)
	for seed := range uint64(6) {
		r := rand.New(rand.NewPCG(seed, 1))
		pick := func(s []string) string { return s[r.IntN(len(s))] }
		var b strings.Builder
		for range 200 {
			var line string
			switch x := r.Float64(); {
			case x < 0.3:
				line = pick([]string{"", `\`}) + h + pick([]string{"  ", " *", " ", "\t ", "\t*"}) + pick(names)
			case x < 0.5:
				line = pick([]string{"", `\`, " "}) + "SHA512" + pick([]string{" (", "("}) + pick(names) +
					pick([]string{") = ", ")=", ") =\t", ")"}) + pick([]string{h, strings.ToUpper(h), h[:127]})
			default:
				for range 1 + r.IntN(6) {
					line += pick(pieces)
				}
			}
			b.WriteString(line + pick([]string{"\n", "\n", "\r\n"}))
		}
		file := fmt.Sprintf("sums-%d", seed)
		must(t, os.WriteFile(file, []byte(b.String()), 0o644))
		runBoth(t, "stdin\n", []string{"C", "C.UTF-8"}[seed%2], "-w", file)
	}
	// BSD md5 -r's form first: from then on it is the only form, in every sums file.
	must(t, os.WriteFile("reversed", []byte(h+" a\n"+h+"  a\n"+h+" *a\n"), 0o644))
	must(t, os.WriteFile("standard", []byte(h+"  a\n"), 0o644))
	runBoth(t, "", "C", "-w", "reversed", "standard")
	runBoth(t, "", "C", "-w", "standard", "reversed")
}

// What digest -c refuses, and what it needs -c for, as sha512sum does.
func TestCheckFlags(t *testing.T) {
	for _, args := range [][]string{
		{"digest", "--status", "."},
		{"digest", "--ignore-missing", "."},
		{"digest", "-c", "--tag", "SUMS"},
		{"digest", "-c", "-z", "SUMS"},
		{"digest", "-c", "--files-from", "LIST"},
	} {
		_, errOut, code := runCLI(t, "", args...)
		if code != 2 || !strings.Contains(errOut, "--") {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and the flag named", args, code, errOut)
		}
	}
}

func TestQuoteName(t *testing.T) {
	for _, c := range []struct {
		in   string
		utf8 bool
		want string
	}{
		{"plain-name_1.txt", false, "plain-name_1.txt"},
		{"", false, "''"},
		{"a b", false, "'a b'"},
		{"it's", false, `"it's"`},
		{"it's$", false, `'it'\''s$'`},
		{"a:b", false, "'a:b'"},
		{"~x", false, "'~x'"},
		{"x~", false, "x~"},
		{"{", false, "'{'"},
		{"{a}", false, "{a}"},
		{"a\nb", false, `'a'$'\n''b'`},
		{"x\n", false, `'x'$'\n'`},
		{"\x01", false, `''$'\001'`},
		{"é", true, "é"},
		{"é", false, `''$'\303\251'`},
		{"\xff", true, `''$'\377'`},
		{"é'", true, `"é'"`},
	} {
		if got := quoteName(c.in, c.utf8); got != c.want {
			t.Errorf("quoteName(%q, utf8 %v) = %s, want %s", c.in, c.utf8, got, c.want)
		}
	}
}
