package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/procfs"
	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/internal/webui"
	"github.com/supervise-dev/supervise/supervisor"
)

// chromium finds a headless browser: Debian's chromium, or another Chromium. Without one the
// test is skipped, unless SUPERVISE_REQUIRE_CHROMIUM is set (as .ci/run does, installing it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("SUPERVISE_REQUIRE_CHROMIUM") != "" {
		t.Fatal("no chromium (apt-get install chromium), and SUPERVISE_REQUIRE_CHROMIUM is set")
	}
	t.Skip("no chromium: apt-get install chromium")
	return ""
}

// headless runs Chromium on url with args (--dump-dom, --screenshot=FILE) and returns what it
// printed on stdout. Its virtual time lets the page fetch and draw before the dump; a minute
// is a margin for a loaded machine (it takes 3 s here).
func headless(t *testing.T, browser, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
		"--window-size=1280,760", "--virtual-time-budget=4000"}, append(args, url)...)
	cmd := exec.CommandContext(ctx, browser, args...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(errs.String(), 2000))
	}
	return out.String()
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// TestLiveViewInChromium runs a job with --ui and opens its page in headless Chromium: the
// page shows the pool as it is, checked against what the test knows independently (the
// worker processes the job's process has, the cores of the machine, the lines that failed),
// and a screenshot of it is taken (SUPERVISE_UI_SCREENSHOT=FILE keeps it: the README's).
func TestLiveViewInChromium(t *testing.T) {
	browser := chromium(t)
	py, script := pythonScript(t, "e2e_worker.py")
	cmd := exec.Command(binary, "--workers", "2", "--ui", "127.0.0.1:0", "-q", "run", "--call", "work", "--", py, script)
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	defer func() {
		stdin.Close() // the job ends with its input
		if err := cmd.Wait(); err == nil {
			t.Error("the job exited 0, want 1 (two lines failed)")
		}
		proctest.AwaitNoProcessWithArg(t, 5*time.Second, script)
	}()
	lines := bufio.NewScanner(stderr)
	var url string
	for url == "" && lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "supervise: live view at "); ok {
			url = rest
		}
	}
	if url == "" {
		t.Fatal("the job never said where its live view is")
	}
	go io.Copy(io.Discard, stderr)

	// 100 lines that succeed and 2 that fail (multiples of 997), then the job waits for more.
	const ok, failing = 100, 2
	fmt.Fprint(stdin, numbered(ok-2), "997\n1994\n99\n100\n")
	results := bufio.NewScanner(stdout)
	for i := 0; i < ok && results.Scan(); i++ {
	}
	go io.Copy(io.Discard, stdout)

	// The page's figures are the pool's latest sample (one second old at most): wait for one
	// with every line in it.
	var st struct {
		Machines []struct {
			Done, Failed int
		}
	}
	for deadline := time.Now().Add(time.Minute); ; {
		r, err := http.Get(url + "api/state")
		must(t, err)
		must(t, json.NewDecoder(r.Body).Decode(&st))
		r.Body.Close()
		if len(st.Machines) == 1 && st.Machines[0].Done == ok && st.Machines[0].Failed == failing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the view's state never counted the lines: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}

	dom := headless(t, browser, url, "--dump-dom")
	var workers []int // the job's own children: its worker processes
	for _, pid := range procfs.Tree(cmd.Process.Pid)[1:] {
		if args, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(args, []byte(script)) {
			workers = append(workers, pid)
		}
	}
	var shown []int
	for _, m := range regexp.MustCompile(`<tr data-slot="\d+" data-pid="(\d+)"`).FindAllStringSubmatch(dom, -1) {
		pid, _ := strconv.Atoi(m[1])
		shown = append(shown, pid)
	}
	slices.Sort(workers)
	slices.Sort(shown)
	if len(workers) != 2 || !slices.Equal(shown, workers) {
		t.Errorf("the page shows workers %v; the job's worker processes are %v", shown, workers)
	}
	if n := strings.Count(dom, `class="core" data-core=`); n != runtime.NumCPU() {
		t.Errorf("the page shows %d cores, the machine has %d", n, runtime.NumCPU())
	}
	for what, re := range map[string]string{
		"done":     `<b class="done">100</b>`,
		"failed":   `<b class="failed">2</b>`,
		"failures": `<tr data-kind="error-ValueError"><td>error-ValueError</td><td>2</td></tr>`,
		"slowest":  `<tr data-task="\d+"><td>#\d+</td><td>work</td>`,
		"queue":    `<b class="queued">–</b>`,
	} {
		if !regexp.MustCompile(re).MatchString(dom) {
			t.Errorf("the page shows no %s (%s)", what, re)
		}
	}
	if t.Failed() {
		t.Logf("the page:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "ui.png")
	if keep := os.Getenv("SUPERVISE_UI_SCREENSHOT"); keep != "" {
		shot = keep
	}
	headless(t, browser, url, "--screenshot="+shot)
	f, err := os.Open(shot)
	must(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != 1280 {
		t.Errorf("the screenshot: %v, %v; want a PNG 1280 wide", err, img)
	}
}

// The page writes what a machine sends as text: a name that is markup stays text.
func TestLiveViewShowsMarkupAsText(t *testing.T) {
	browser := chromium(t)
	evil := `<img src=x onerror="document.body.dataset.pwned=1">`
	srv := httptest.NewServer(webui.Handler("test", func() []webui.Machine {
		return []webui.Machine{{Name: evil, Queue: "q", Queued: 1, DeadLetters: 0, Updated: time.Now(),
			Stats: supervisor.Stats{Taken: time.Now(), Failures: map[string]int{evil: 1},
				Workers: []supervisor.WorkerStats{{Slot: 0, Pid: 42, State: supervisor.WorkerState(evil)}}}}}
	}))
	defer srv.Close()
	dom := headless(t, browser, srv.URL+"/", "--dump-dom")
	if strings.Contains(dom, "<img") || strings.Contains(dom, "pwned") && !strings.Contains(dom, "&lt;img") {
		t.Errorf("markup from a machine became markup:\n%s", dom)
	}
	if n := strings.Count(dom, "&lt;img src=x"); n < 3 {
		t.Errorf("the machine's name, state and failure kind shown as text %d times, want 3:\n%s", n, dom)
	}
}
