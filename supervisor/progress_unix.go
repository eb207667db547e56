//go:build unix

package supervisor

import (
	"fmt"
	"os"
	"strconv"

	"github.com/supervise-dev/supervise/channel"
	"golang.org/x/sys/unix"
)

// newProgressPage makes a worker's progress page (channel/progress.go): memory shared with the
// worker through a file it inherits as descriptor 3. It returns the file to pass (the caller
// closes it once the worker started), the parent's mapping of it, and the environment that
// tells the worker where it is.
func newProgressPage(size int) (*os.File, []byte, []string, error) {
	f, err := progressFile()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("mapping a progress page: %w", err)
	}
	env := []string{channel.ProgressFDKey + "=3", channel.ProgressSizeKey + "=" + strconv.Itoa(size)}
	return f, b, env, nil
}

// unmapProgressPage releases the parent's mapping, once nothing reads it.
func unmapProgressPage(b []byte) {
	if b != nil {
		_ = unix.Munmap(b)
	}
}
