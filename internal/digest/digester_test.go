package digest

import (
	"bytes"
	"crypto/sha512"
	"math/rand/v2"
	"testing"
)

// The digest worker may hash with OpenSSL (Linux, when libcrypto loads) or with Go: both must
// give crypto/sha512's digests, across sizes around the block size and the read size, and
// after a reset.
func TestDigesterMatchesCryptoSHA512(t *testing.T) {
	d := newDigester()
	defer d.close()
	t.Logf("hashing with %T", d)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 111, 112, 127, 128, 129, 4096, 256 << 10, 1<<20 + 3} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want := sha512.Sum512(data)
		for range 2 {
			d.reset()
			for chunk := range slicesOf(data, 1000) {
				d.write(chunk)
			}
			if got := d.sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("size %d: got %x, want %x", size, got, want)
			}
		}
	}
}

func slicesOf(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}
