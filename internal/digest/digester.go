package digest

import (
	"crypto/sha512"
	"hash"
)

// digester is the SHA-512 the digest worker uses: OpenSSL's where available (sha512_linux.go),
// else Go's.
type digester interface {
	reset()
	write(p []byte)
	sum(dst []byte) []byte // appends the digest; the state is spent until reset
	close()
}

func newDigester() digester {
	if d, ok := newOpenSSL(); ok {
		return d
	}
	return goSHA512{sha512.New()}
}

type goSHA512 struct{ h hash.Hash }

func (g goSHA512) reset()                { g.h.Reset() }
func (g goSHA512) write(p []byte)        { g.h.Write(p) }
func (g goSHA512) sum(dst []byte) []byte { return g.h.Sum(dst) }
func (g goSHA512) close()                {}
