package mbsha512

import (
	"bytes"
	"crypto/sha512"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// hashAll runs messages through a Hasher, each fed in pieces of random size, a new message
// starting in a lane as soon as it is free, and returns the digests in order.
func hashAll(t *testing.T, msgs [][]byte, rng *rand.Rand) [][]byte {
	t.Helper()
	var h Hasher
	sums := make([][]byte, len(msgs))
	owner := [Lanes]int{}
	rest := [Lanes][]byte{}
	next := 0
	feed := func(lane int) {
		p := rest[lane]
		n := len(p)
		if n > 0 && rng.IntN(3) > 0 {
			n = rng.IntN(n + 1)
		}
		rest[lane] = p[n:]
		h.Feed(lane, p[:n], len(rest[lane]) == 0)
	}
	start := func(lane int) {
		if next == len(msgs) {
			return
		}
		owner[lane], rest[lane] = next, msgs[next]
		next++
		h.Start(lane)
		feed(lane)
	}
	for lane := 0; lane < Lanes; lane++ {
		start(lane)
	}
	for {
		lane, done := h.Run()
		if lane < 0 {
			break
		}
		if !done {
			feed(lane)
			continue
		}
		sums[owner[lane]] = h.Sum(lane, nil)
		start(lane)
	}
	return sums
}

func TestMatchesCryptoSHA512(t *testing.T) {
	t.Logf("Fast() = %v", Fast())
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	for n := 0; n <= 3*BlockSize+1; n++ { // every padding case: 0..111, 112..127, block edges
		msgs = append(msgs, randomBytes(rng, n))
	}
	for i := 0; i < 40; i++ {
		msgs = append(msgs, randomBytes(rng, rng.IntN(70000)))
	}
	sums := hashAll(t, msgs, rng)
	for i, m := range msgs {
		want := sha512.Sum512(m)
		if !bytes.Equal(sums[i], want[:]) {
			t.Fatalf("message %d (%d bytes): got %x, want %x", i, len(m), sums[i], want)
		}
	}
}

// TestAssemblyMatchesGeneric compares the block function with the Go reference lane by lane,
// on four different messages and states.
func TestAssemblyMatchesGeneric(t *testing.T) {
	if !haveAsm() {
		t.Skip("no vector code on this CPU")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var state, ref [8 * Lanes]uint64
	for i := range state {
		state[i] = rng.Uint64()
	}
	ref = state
	var ptrs [Lanes]unsafe.Pointer
	const n = 7
	for lane := range ptrs {
		ptrs[lane] = unsafe.Pointer(&randomBytes(rng, n*BlockSize)[0])
	}
	blocks(&state, &ptrs, n)
	blocksGeneric(&ref, &ptrs, n)
	if state != ref {
		t.Fatalf("assembly and reference differ:\n%x\n%x", state, ref)
	}
}

// TestStop abandons messages midway, in one lane while others go on, and by starting a lane
// again: the other lanes' digests and the next message's are unaffected.
func TestStop(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	msgs := [][]byte{randomBytes(rng, 10000), randomBytes(rng, 300), randomBytes(rng, 5000)}
	var h Hasher
	h.Start(0)
	h.Feed(0, msgs[0], true)
	h.Start(1)
	h.Feed(1, msgs[1][:200], false) // will be stopped
	h.Start(3)
	h.Feed(3, msgs[2][:1000], false) // will be started again
	got := map[int][]byte{}
	for {
		lane, done := h.Run()
		switch {
		case lane < 0:
			for i, want := range map[int][]byte{0: msgs[0], 3: msgs[2]} {
				if sum := sha512.Sum512(want); !bytes.Equal(got[i], sum[:]) {
					t.Fatalf("lane %d: got %x, want %x", i, got[i], sum)
				}
			}
			return
		case done:
			got[lane] = h.Sum(lane, nil)
		case lane == 1:
			h.Stop(1)
		case lane == 3 && h.lanes[3].length == 1000:
			h.Start(3)
			h.Feed(3, msgs[2], true)
		default:
			t.Fatalf("lane %d wants data it was not meant to", lane)
		}
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func BenchmarkFourLanes(b *testing.B) {
	buf := make([]byte, Lanes*64<<10)
	b.SetBytes(int64(len(buf)))
	var h Hasher
	for b.Loop() {
		for lane := 0; lane < Lanes; lane++ {
			h.Start(lane)
			h.Feed(lane, buf[lane*64<<10:(lane+1)*64<<10], true)
		}
		for {
			lane, _ := h.Run()
			if lane < 0 {
				break
			}
		}
	}
}

func BenchmarkOneLane(b *testing.B) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	var h Hasher
	for b.Loop() {
		h.Start(0)
		h.Feed(0, buf, true)
		h.Run()
	}
}

func BenchmarkCryptoSHA512(b *testing.B) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		sha512.Sum512(buf)
	}
}
