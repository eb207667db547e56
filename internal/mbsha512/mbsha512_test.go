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
	if !haveAsm {
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

func TestDetach(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, split := range []int{0, 1, 127, 128, 129, 1000, 4096} {
		msg := randomBytes(rng, 10000)
		var h Hasher
		h.Start(2)
		h.Feed(2, msg[:split], false)
		if lane, done := h.Run(); lane != 2 || done {
			t.Fatalf("Run = %d, %v; want lane 2 wanting data", lane, done)
		}
		d := h.Detach(2)
		d.Write(msg[split:])
		want := sha512.Sum512(msg)
		if got := d.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Fatalf("split at %d: got %x, want %x", split, got, want)
		}
		if lane, _ := h.Run(); lane != -1 {
			t.Fatalf("after Detach, Run = %d; want -1 (no lane active)", lane)
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
