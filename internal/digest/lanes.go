package digest

import (
	"context"
	"crypto/sha512"
	"os"
	"sync"

	"github.com/supervise-dev/supervise/internal/mbsha512"
)

// useLanes says whether digest workers hash four files at once (internal/mbsha512): on CPUs
// with AVX2 (best with AVX-512VL), unless SUPERVISE_HASH names one SHA-512 ("go" or "openssl").
func useLanes() bool { return mbsha512.Fast() && os.Getenv("SUPERVISE_HASH") == "" }

// laneBuffer is the read size of a lane: four lanes' buffers stay within a core's L2 cache,
// where the hashing reads them back.
const laneBuffer = 128 << 10

// laneFile is the file a lane is hashing.
type laneFile struct {
	index int   // in the request's paths
	fd    int   // open while the lane hashes it
	size  int64 // bytes read so far
	want  int64 // its size when opened (fstat)
	buf   []byte
}

// digestLanes is Files with four files in flight, one in each lane of a multi-buffer
// SHA-512. Files start in path order, so that Paths[:Done] are the ones attempted, and finish
// in any order; the answer is the same as Files gives.
func digestLanes(ctx context.Context, req Request, progress func(int64)) (Answer, error) {
	ans := Answer{Sums: make([]byte, sha512.Size*len(req.Paths))}
	var (
		h      mbsha512.Hasher
		dirs   dirCache
		lanes  [mbsha512.Lanes]*laneFile
		read   int64 // bytes read in this task, for the budget and progress reports
		bufs   = lanesBuffers.Get().(*[mbsha512.Lanes][]byte)
		failed = func(i int, err error) {
			if ans.Failed == nil {
				ans.Failed = map[int]string{}
			}
			ans.Failed[i] = Describe(err)
		}
	)
	defer lanesBuffers.Put(bufs)
	defer dirs.close()
	defer func() {
		for _, f := range lanes {
			if f != nil {
				closeFile(f.fd)
			}
		}
	}()
	// took accounts for n more bytes read, and reports progress when asked for.
	took := func(n int) {
		read += int64(n)
		if progress != nil && read%progressEvery < int64(n) {
			progress(read)
		}
	}
	// start opens the next path that can be hashed in lane and feeds the lane its first read,
	// or leaves the lane free when no path is left (or the budget is spent).
	start := func(lane int) {
		lanes[lane] = nil
		h.Stop(lane)
		for ans.Done < len(req.Paths) && (req.Budget <= 0 || read < req.Budget) {
			i := ans.Done
			ans.Done++
			buf := bufs[lane]
			dirfd, name := dirs.at(req.Paths[i])
			fd, want, err := openRegular(dirfd, name)
			if err != nil {
				failed(i, err)
				continue
			}
			if !req.Whole && want >= BigFile {
				closeFile(fd)
				if ans.Deferred == nil {
					ans.Deferred = map[int]int64{}
				}
				ans.Deferred[i] = want
				continue
			}
			n, err := Retry(func() (int, error) { return readFile(fd, buf) })
			if err != nil {
				closeFile(fd)
				failed(i, err)
				continue
			}
			took(n)
			lanes[lane] = &laneFile{index: i, fd: fd, size: int64(n), want: want, buf: buf}
			h.Start(lane)
			h.Feed(lane, buf[:n], atEnd(n, len(buf), int64(n), want))
			return
		}
	}
	for lane := range lanes {
		start(lane)
	}
	for {
		lane, done := h.Run()
		if lane < 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return Answer{}, err
		}
		f := lanes[lane]
		if done {
			h.Sum(lane, ans.Sums[sha512.Size*f.index:sha512.Size*f.index]) // in place
			ans.Bytes += f.size
			closeFile(f.fd)
			start(lane)
			continue
		}
		n, err := Retry(func() (int, error) { return readFile(f.fd, f.buf) })
		if err != nil {
			closeFile(f.fd)
			failed(f.index, err)
			start(lane)
			continue
		}
		took(n)
		f.size += int64(n)
		h.Feed(lane, f.buf[:n], atEnd(n, len(f.buf), f.size, f.want))
	}
	ans.Sums = ans.Sums[:sha512.Size*ans.Done]
	return ans, nil
}

var lanesBuffers = sync.Pool{New: func() any {
	var bufs [mbsha512.Lanes][]byte
	for i := range bufs {
		bufs[i] = make([]byte, laneBuffer)
	}
	return &bufs
}}

// BigPerTask is how many big files (BigFile bytes or more, largest first) a task gets: as many
// as a worker hashes at once. A lane hashes at about the speed of a single SHA-512, so a task
// of four takes about as long as its largest file alone, and leaves the other workers free.
// The parent decides by its own CPU, which is its workers' (remote machines: most likely).
var BigPerTask = func() int {
	if useLanes() {
		return mbsha512.Lanes
	}
	return 1
}()
