package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/supervise-dev/supervise/supervisor"
)

// version is this build's module version and, where the build recorded them, its commit, the
// commit's time and whether the tree had changes (runtime/debug.ReadBuildInfo).
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	v := info.Main.Version
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		v += ", commit " + rev
		if t := settings["vcs.time"]; t != "" {
			v += " of " + t
		}
		if settings["vcs.modified"] == "true" {
			v += ", with changes"
		}
	}
	return v + ", " + info.GoVersion
}

// unknownLeadingFlag finds an unknown flag before the subcommand. cobra looks for the
// subcommand first, and takes an unknown --flag for one that consumes the next word: it said
// `unknown command "x"` for supervise --frobnicate digest x.
func unknownLeadingFlag(root *cobra.Command, args []string) error {
	flags := root.PersistentFlags()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return nil // the subcommand, or operands: cobra takes it from here
		}
		var f *pflag.Flag
		name, hasValue := strings.TrimPrefix(a, "--"), false
		if strings.HasPrefix(a, "--") {
			name, _, hasValue = strings.Cut(name, "=")
			if name == "help" || name == "version" {
				return nil
			}
			f = flags.Lookup(name)
		} else { // -j4, -qj 4: shorthands, the last one may take a value
			for k, c := range a[1:] {
				if c == 'h' {
					return nil
				}
				if f = flags.ShorthandLookup(string(c)); f == nil {
					name = string(c)
					break
				}
				if f.NoOptDefVal == "" { // takes a value: the rest of the word, or the next
					hasValue = k+2 < len(a)
					break
				}
			}
		}
		if f == nil {
			return fmt.Errorf("unknown flag: %s (the flags every command takes: supervise --help)", a)
		}
		if f.NoOptDefVal == "" && !hasValue {
			i++ // its value
		}
	}
	return nil
}

// checkOutputPath makes sure path can be written before the job starts, rather than after it:
// it opens the file for writing (creating it) and removes it again if it was not there.
func checkOutputPath(flag, path string) error {
	if path == "" {
		return nil
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	f.Close()
	if errors.Is(statErr, os.ErrNotExist) {
		os.Remove(path)
	}
	return nil
}

// configNames are the library's names in its errors, and the flags that set them.
var configNames = strings.NewReplacer(
	"Config.StartTimeout", "--start-timeout",
	"Config.MaxProcs", "--max-procs",
	"Config.CPULimit", "--cpu-limit",
	"Config.Workers", "--workers",
	"Config.MemoryHardLimit", "--memory-limit",
	"Config.MemorySoftLimit", "--memory-soft-limit",
	"Config.TaskTimeout", "--timeout",
	"Config.CancelGrace", "--cancel-grace",
	"Config.HangTimeout", "--hang-timeout",
)

// notAWorker is what a user who gave run an ordinary command is told; otherVersion, one who
// gave it a worker of another protocol version.
const (
	notAWorker = "is it a worker? A worker sends a hello first (docs/protocol.md); " +
		"to run an ordinary command once per input, use supervise exec"
	otherVersion = "the worker speaks another version of the protocol than this supervise " +
		"(docs/protocol.md, section 4): update the older of the two"
)

// message is err as the command line says it: without the library's "supervise: " prefix
// (the command adds its own), with flags for the library's Config fields, and for a worker
// that never said hello, what that likely means.
func message(err error) string {
	s := err.Error()
	for strings.HasPrefix(s, "supervise: ") {
		s = strings.TrimPrefix(s, "supervise: ")
	}
	s = configNames.Replace(s)
	switch {
	case errors.Is(err, supervisor.ErrProtocolVersion):
		s += "\n  " + otherVersion
	case errors.Is(err, supervisor.ErrBadHello):
		s += "\n  " + notAWorker
	}
	return s
}
