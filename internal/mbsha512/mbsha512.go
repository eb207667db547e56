// Package mbsha512 computes the SHA-512 of up to four messages at once, one in each 64-bit
// lane of 256-bit vectors ("multi-buffer" hashing).
//
// SHA-512 of one message is a chain: each block needs the state the previous block left, so a
// single message runs on the scalar units, one round after another. Four independent messages
// can share each vector instruction instead. On CPUs with AVX-512VL (AMD Zen 4 and later, Intel
// since Skylake-SP) one call hashes a block of each of the four lanes in about the time
// crypto/sha512 hashes one block, so when there are many files to hash the work per byte falls
// to about a third. With AVX2 alone (no 64-bit rotate, half the registers) it falls to about a
// half. One message alone runs at about crypto/sha512's speed.
//
// Without AVX2 (and on other architectures) Fast reports false and the same API runs a plain
// Go reference, for tests; callers should then use crypto/sha512.
//
// A Hasher is driven by its caller: Start a message in a free lane, Feed it data, and Run
// until a lane needs more data or has finished its message.
package mbsha512

import (
	"encoding/binary"
	"unsafe"
)

const (
	Lanes     = 4   // messages hashed at once
	BlockSize = 128 // bytes of a SHA-512 block
	Size      = 64  // bytes of a SHA-512 digest
)

// Fast reports whether this CPU runs the vector code. Without it a Hasher is far slower than
// crypto/sha512.
func Fast() bool { return haveAsm() }

var iv = [8]uint64{
	0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
	0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
}

// Hasher hashes up to Lanes messages at once. Its zero value has every lane free.
type Hasher struct {
	state [8 * Lanes]uint64 // word i of lane l at [Lanes*i+l]
	ptrs  [Lanes]unsafe.Pointer
	lanes [Lanes]laneState
}

type laneState struct {
	active  bool
	pending []byte // fed, not yet hashed
	final   bool   // pending ends the message
	seg     []byte // whole blocks to hash next: part of pending, or of carry
	carry   [2 * BlockSize]byte
	nc      int    // bytes of a partial block in carry
	padded  bool   // seg is the padded tail: when it is hashed, the message is
	length  uint64 // message bytes taken into seg or carry so far
}

// Start begins a new message in lane, abandoning the message it had, if any.
func (h *Hasher) Start(lane int) {
	for i, v := range iv {
		h.state[Lanes*i+lane] = v
	}
	h.lanes[lane] = laneState{active: true}
}

// Feed gives lane the next data of its message; final says it is the last. The Hasher reads
// p until Run returns that lane asking for more (or finished): p must not change until then.
// Feed is called after Start, and after Run returned this lane wanting data.
func (h *Hasher) Feed(lane int, p []byte, final bool) {
	l := &h.lanes[lane]
	l.pending, l.final = p, final
}

// Run hashes the active lanes together until one of them needs its caller, and returns it:
// done means its message is hashed (call Sum, then Start it again or leave it free), else it
// has used all it was fed and wants Feed. Run returns -1 when no lane is active.
func (h *Hasher) Run() (lane int, done bool) {
	for {
		n, first := 0, -1
		for i := range h.lanes {
			l := &h.lanes[i]
			if !l.active {
				continue
			}
			if len(l.seg) == 0 {
				if l.padded {
					l.active, l.padded = false, false
					return i, true
				}
				if !l.next() {
					return i, false
				}
			}
			if nb := len(l.seg) / BlockSize; first < 0 || nb < n {
				n = nb
			}
			if first < 0 {
				first = i
			}
		}
		if first < 0 {
			return -1, false
		}
		for i := range h.lanes {
			if l := &h.lanes[i]; l.active {
				h.ptrs[i] = unsafe.Pointer(unsafe.SliceData(l.seg))
			}
		}
		for i := range h.lanes {
			if !h.lanes[i].active { // an idle lane hashes a copy of another's data, unused
				h.ptrs[i] = h.ptrs[first]
			}
		}
		blocks(&h.state, &h.ptrs, n)
		for i := range h.lanes {
			if l := &h.lanes[i]; l.active {
				l.seg = l.seg[n*BlockSize:]
			}
		}
	}
}

// next sets seg to the lane's next whole blocks, or reports that it needs more data.
func (l *laneState) next() bool {
	if l.nc == 0 && len(l.pending) >= BlockSize {
		nb := len(l.pending) / BlockSize
		l.seg, l.pending = l.pending[:nb*BlockSize], l.pending[nb*BlockSize:]
		l.length += uint64(nb * BlockSize)
		return true
	}
	c := copy(l.carry[l.nc:BlockSize], l.pending)
	l.nc += c
	l.pending = l.pending[c:]
	l.length += uint64(c)
	if l.nc == BlockSize {
		l.seg, l.nc = l.carry[:BlockSize], 0
		return true
	}
	if !l.final {
		return false
	}
	// The tail: 0x80, zeros, the length in bits as a 128-bit big-endian number.
	size := BlockSize
	if l.nc >= BlockSize-16 {
		size = 2 * BlockSize
	}
	l.carry[l.nc] = 0x80
	clear(l.carry[l.nc+1 : size])
	binary.BigEndian.PutUint64(l.carry[size-16:], l.length>>61)
	binary.BigEndian.PutUint64(l.carry[size-8:], l.length<<3)
	l.seg, l.nc, l.padded = l.carry[:size], 0, true
	return true
}

// Sum appends the digest of the message lane finished (Run returned it done).
func (h *Hasher) Sum(lane int, dst []byte) []byte {
	for i := 0; i < 8; i++ {
		dst = binary.BigEndian.AppendUint64(dst, h.state[Lanes*i+lane])
	}
	return dst
}

// Stop abandons lane's message, if any, and frees the lane.
func (h *Hasher) Stop(lane int) { h.lanes[lane] = laneState{} }
