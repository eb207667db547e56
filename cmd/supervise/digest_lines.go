package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/supervise-dev/supervise/supervisor"
)

// describeTask names a digest task's files in a few words.
func describeTask(paths []string) string {
	if len(paths) == 1 {
		return paths[0]
	}
	if len(paths) == 2 {
		return paths[0] + " and 1 more file"
	}
	return fmt.Sprintf("%s and %d more files", paths[0], len(paths)-1)
}

// interruptedError is a digest stopped by a signal before every file was hashed.
type interruptedError struct{ left, total int }

func (e interruptedError) Error() string {
	return fmt.Sprintf("interrupted: %d of %d files not hashed", e.left, e.total)
}

// taskFailure says in a few words why a task failed, for each of its files' error lines; the
// whole error (with the worker's stderr tail) is logged once.
func taskFailure(err error) string {
	var te *supervisor.TimeoutError
	if errors.As(err, &te) { // it fails at its limit, whatever its handler did then
		return fmt.Sprintf("%v (%v)", supervisor.ErrTimeout, te.Limit)
	}
	var we *supervisor.WorkerError
	if errors.As(err, &we) {
		msg := fmt.Sprintf("worker %d (pid %d) died", we.WorkerID, we.Pid)
		if we.State != nil {
			msg += ": " + we.State.String()
		}
		return msg
	}
	var re *supervisor.RemoteError
	if errors.As(err, &re) {
		return re.Error()
	}
	return err.Error()
}

// lineFormat is how a sum line is written: sha512sum's default, or its --tag (BSD) form;
// with zero, ended by NUL, not newline, and the name not escaped (sha512sum -z).
type lineFormat struct{ tag, zero bool }

// sumLine formats one line as sha512sum does: names holding a backslash, newline or carriage
// return are escaped, and the line then starts with a backslash (not with -z).
func sumLine(sum []byte, name string) []byte { return lineFormat{}.line(sum, name) }

func (f lineFormat) line(sum []byte, name string) []byte {
	line := make([]byte, 0, 1+2*len(sum)+12+len(name)+1)
	escape := !f.zero && strings.ContainsAny(name, "\\\n\r")
	if escape {
		line = append(line, '\\')
	}
	if f.tag {
		line = append(line, "SHA512 ("...)
	} else {
		line = hex.AppendEncode(line, sum)
		line = append(line, ' ', ' ')
	}
	if !escape {
		line = append(line, name...)
	} else {
		for i := 0; i < len(name); i++ {
			switch c := name[i]; c {
			case '\\':
				line = append(line, '\\', '\\')
			case '\n':
				line = append(line, '\\', 'n')
			case '\r':
				line = append(line, '\\', 'r')
			default:
				line = append(line, c)
			}
		}
	}
	if f.tag {
		line = append(line, ") = "...)
		line = hex.AppendEncode(line, sum)
	}
	if f.zero {
		return append(line, 0)
	}
	return append(line, '\n')
}
