//go:build unix

package child

import (
	"os"
	"strconv"
	"syscall"

	"github.com/supervise-dev/supervise/channel"
)

// openProgress maps the progress page the parent gave this worker (channel/progress.go), or
// returns nil if it gave none or it cannot be mapped: the worker then says so in its hello,
// and gets no chunk calls where they would need it.
func openProgress() *channel.ProgressPage {
	fd, err1 := strconv.Atoi(os.Getenv(channel.ProgressFDKey))
	size, err2 := strconv.Atoi(os.Getenv(channel.ProgressSizeKey))
	if err1 != nil || err2 != nil || fd < 3 || size < channel.ProgressHeader || size > 1<<30 {
		return nil
	}
	syscall.CloseOnExec(fd) // the handler's own children get no share of it
	b, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	syscall.Close(fd) // the mapping, if made, stays; the descriptor is of no more use either way
	if err != nil {
		return nil
	}
	p := channel.NewProgressPage(b)
	if p == nil {
		syscall.Munmap(b)
	}
	return p
}
