package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// logFlags are --joblog, --resume, --resume-failed and --halt, which exec, run and digest
// share.
type logFlags struct {
	joblog       string
	resume       bool
	resumeFailed bool
	halt         string
}

func (lf *logFlags) add(f *pflag.FlagSet, jobs string) {
	f.StringVar(&lf.joblog, "joblog", "", "write a line per "+jobs+", as it ends, to `FILE` (GNU parallel's format)")
	f.BoolVar(&lf.resume, "resume", false, "skip the "+jobs+"s --joblog shows ended, and add to it")
	f.BoolVar(&lf.resumeFailed, "resume-failed", false, "like --resume, but run again the "+jobs+"s that failed")
	f.StringVar(&lf.halt, "halt", "never", "stop early: now|soon,fail|success|done=N or =N% (GNU parallel's)")
}

// open checks the flags and opens the job log, before any job starts.
func (lf logFlags) open() (haltRule, pastJobs, *jobLog, error) {
	rule, err := parseHalt(lf.halt)
	if err != nil {
		return rule, pastJobs{}, nil, err
	}
	resume := lf.resume || lf.resumeFailed
	if resume && lf.joblog == "" {
		return rule, pastJobs{}, nil, errors.New("--resume and --resume-failed read the job log: give --joblog FILE")
	}
	var past pastJobs
	if resume {
		if past, err = readJobLog(lf.joblog); err != nil {
			return rule, past, nil, err
		}
	}
	jl, err := openJobLog(lf.joblog, resume)
	return rule, past, jl, err
}

// joblogHeader is the first line of GNU parallel's --joblog, whose format this is.
const joblogHeader = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

// jobEntry is one line of a job log: one job, as it ended.
type jobEntry struct {
	Seq      int
	Start    time.Time
	Runtime  time.Duration
	Send     int64 // bytes of input
	Receive  int64 // bytes of output
	Exit     int   // -1: it did not exit on its own (killed, never started, its worker died)
	Signal   int
	Command  string
	Key      string // what --resume matches on, if not Seq (digest: the path)
	Finished bool   // it ended (not interrupted): only such jobs are logged
}

// failed is whether the job counts as failed: --resume-failed runs it again.
func (e jobEntry) failed() bool { return e.Exit != 0 || e.Signal != 0 }

// jobLog is --joblog FILE: one line per job, written as the job ends, so that a run killed
// halfway keeps the lines of the jobs that ended.
type jobLog struct {
	f *os.File
}

// openJobLog opens path for the job log: truncated, with the header, or with resume kept and
// added to. An empty path is no log (nil, which logs nothing).
func openJobLog(path string, resume bool) (*jobLog, error) {
	if path == "" {
		return nil, nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if resume {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o666)
	if err != nil {
		return nil, fmt.Errorf("--joblog: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		if _, err := f.WriteString(joblogHeader); err != nil {
			f.Close()
			return nil, fmt.Errorf("--joblog: %w", err)
		}
	}
	return &jobLog{f: f}, nil
}

// add writes e's line, in one write.
func (l *jobLog) add(e jobEntry) error {
	if l == nil {
		return nil
	}
	cmd := logEscape.Replace(e.Command)
	line := fmt.Sprintf("%d\t:\t%.3f\t%10.3f\t%d\t%d\t%d\t%d\t%s\n", e.Seq, float64(e.Start.UnixMilli())/1000,
		e.Runtime.Seconds(), e.Send, e.Receive, e.Exit, e.Signal, cmd)
	if _, err := l.f.WriteString(line); err != nil {
		return fmt.Errorf("--joblog: %w", err)
	}
	return nil
}

func (l *jobLog) close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// pastJobs are the jobs a job log says ended, for --resume and --resume-failed: by Seq, or by
// Command where the run keys its jobs so (digest, whose file numbers change with the tree).
type pastJobs struct {
	bySeq map[int]bool    // seq -> failed
	byKey map[string]bool // command -> failed
}

// readJobLog reads the job log at path; a missing file is an empty log. A line that is not a
// job log's is an error naming it.
func readJobLog(path string) (pastJobs, error) {
	past := pastJobs{bySeq: map[int]bool{}, byKey: map[string]bool{}}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return past, nil
	}
	if err != nil {
		return past, fmt.Errorf("--joblog: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return past, nil
		}
		if err != nil && err != io.EOF {
			return past, fmt.Errorf("--joblog %s: %w", path, err)
		}
		if n == 1 && line == joblogHeader {
			continue
		}
		if err == io.EOF { // a line cut short by a killed run: that job did not end
			return past, nil
		}
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), "\t", 9)
		seq, err1 := strconv.Atoi(f[0])
		var exit, sig int
		var err2, err3 error
		if len(f) == 9 {
			exit, err2 = strconv.Atoi(f[6])
			sig, err3 = strconv.Atoi(f[7])
		}
		if len(f) != 9 || err1 != nil || err2 != nil || err3 != nil {
			return past, fmt.Errorf("--joblog %s, line %d: not a job log line: %.80q", path, n, line)
		}
		failed := exit != 0 || sig != 0
		past.bySeq[seq] = failed
		past.byKey[f[8]] = failed
	}
}

// logEscape keeps a command on its line and in its column of the job log.
var logEscape = strings.NewReplacer("\n", `\n`, "\t", `\t`)

// skip says whether --resume (or --resume-failed, with failedToo) skips the job.
func (p pastJobs) skip(seq int, key string, byKey, failedToo bool) bool {
	if len(p.bySeq) == 0 { // no --resume, or nothing logged: a job per file costs nothing
		return false
	}
	failed, ok := p.bySeq[seq]
	if byKey {
		failed, ok = p.byKey[logEscape.Replace(key)]
	}
	return ok && !(failedToo && failed)
}

// haltRule is --halt: when to stop a run early, as GNU parallel's.
type haltRule struct {
	when    string  // "": never; "now": kill running jobs; "soon": start no more, let them end
	on      string  // "fail", "success" or "done"
	count   int     // after this many, or
	percent float64 // this share of the jobs (0: count)
}

// parseHalt parses never, now|soon,fail|success|done=N or N%, and parallel's shorthands 1
// (soon,fail=1) and 2 (now,fail=1).
func parseHalt(spec string) (haltRule, error) {
	switch spec {
	case "", "never", "0":
		return haltRule{}, nil
	case "1":
		return haltRule{when: "soon", on: "fail", count: 1}, nil
	case "2":
		return haltRule{when: "now", on: "fail", count: 1}, nil
	}
	bad := fmt.Errorf("--halt %q: want never, or now|soon,fail|success|done=N or =N%% (as GNU parallel's)", spec)
	when, cond, ok := strings.Cut(spec, ",")
	on, n, ok2 := strings.Cut(cond, "=")
	if !ok || !ok2 || (when != "now" && when != "soon") || (on != "fail" && on != "success" && on != "done") {
		return haltRule{}, bad
	}
	h := haltRule{when: when, on: on}
	if p, ok := strings.CutSuffix(n, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v <= 0 || v > 100 {
			return haltRule{}, bad
		}
		h.percent = v
		return h, nil
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 {
		return haltRule{}, bad
	}
	h.count = v
	return h, nil
}

// jobEnds records jobs as they end: each one's line in the job log, and its count against
// --halt, which, halting now, cancels the tasks out.
type jobEnds struct {
	log    *jobLog
	halt   halter
	cancel func()
	halted bool
	err    error // the first failed write to the log
}

// ended records e; it says whether e halted the run.
func (j *jobEnds) ended(e jobEntry) bool {
	if err := j.log.add(e); err != nil && j.err == nil {
		j.err = err
	}
	if !j.halt.ended(e.failed()) || j.halted {
		return false
	}
	j.halted = true
	if j.halt.rule.when == "now" {
		j.cancel()
	}
	return true
}

// halter counts jobs as they end against a haltRule.
type halter struct {
	rule              haltRule
	ok, failed, total int // ended so far; total: jobs in all, once known (0 before)
}

// ended counts a job; it says whether the run halts now.
func (h *halter) ended(failed bool) bool {
	if failed {
		h.failed++
	} else {
		h.ok++
	}
	if h.rule.when == "" {
		return false
	}
	n := h.ok + h.failed // "done"
	switch h.rule.on {
	case "fail":
		n = h.failed
	case "success":
		n = h.ok
	}
	switch {
	case h.rule.percent > 0:
		// A share of all the jobs, known once the input has been read to its end (a run
		// with a percentage reads it all first, as GNU parallel does).
		return h.total > 0 && float64(n)*100 >= h.rule.percent*float64(h.total)
	default:
		return n >= h.rule.count
	}
}
