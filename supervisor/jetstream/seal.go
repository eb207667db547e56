package jetstream

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/nacl/box"
)

// Results are sealed to the run that submitted the task, so that another client allowed to
// read the results stream (another submitter of the queue) reads nothing of them, and bound
// to the task's own bytes, so that a task another client published under this run's name
// cannot pass its result off as this run's (docs/protocol.md, section 11).
//
// NaCl's box (Curve25519, XSalsa20, Poly1305), from golang.org/x/crypto: the run has a key
// pair of its own and sends its public key with each task; a machine has one too and seals
// each result with the key the two share, computed once per run and machine and cached, so
// that a result costs a cipher and a MAC, not a Curve25519 multiplication.

// ErrForged: a task's result was not sealed to its run, or was sealed for other bytes than
// the task's: another client published a task under the run's name, and its result took the
// place of the task's own. The task fails with it; what the impostor's task returned is not
// given to the caller.
var ErrForged = errors.New("the result is not for this run's task: another client published a task in its name")

const (
	sealNonce    = 24
	sealDigest   = sha256.Size
	sealOverhead = sealNonce + box.Overhead + sealDigest // what sealing adds to a result
	sharedCached = 1024                                  // shared keys kept, per key pair
)

// sealKeys is a key pair and the keys it shares with peers, cached.
type sealKeys struct {
	pub, priv *[32]byte
	pubText   string

	mu     sync.Mutex
	shared map[[32]byte]*[32]byte
}

func newSealKeys() (*sealKeys, error) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("making a key pair to seal results: %w", err)
	}
	return &sealKeys{pub: pub, priv: priv, pubText: encodeKey(pub), shared: map[[32]byte]*[32]byte{}}, nil
}

// sharedWith is the key k shares with peer, computed once (the cache is emptied when full:
// a client naming many keys costs its own work, not memory).
func (k *sealKeys) sharedWith(peer *[32]byte) *[32]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.shared[*peer]; ok {
		return s
	}
	if len(k.shared) >= sharedCached {
		clear(k.shared)
	}
	s := new([32]byte)
	box.Precompute(s, peer, k.priv)
	k.shared[*peer] = s
	return s
}

// seal is nonce, then box(digest of the task, then the result envelope).
func (k *sealKeys) seal(peer *[32]byte, task, envelope []byte) ([]byte, error) {
	var nonce [sealNonce]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	digest := sha256.Sum256(task)
	plain := append(digest[:], envelope...)
	return box.SealAfterPrecomputation(nonce[:], plain, &nonce, k.sharedWith(peer)), nil
}

// open is seal's inverse: the digest of the task sealed with it, and the envelope.
func (k *sealKeys) open(peer *[32]byte, sealed []byte) (digest [sealDigest]byte, envelope []byte, err error) {
	if len(sealed) < sealOverhead {
		return digest, nil, fmt.Errorf("%d bytes, shorter than a sealed result", len(sealed))
	}
	var nonce [sealNonce]byte
	copy(nonce[:], sealed)
	plain, ok := box.OpenAfterPrecomputation(nil, sealed[sealNonce:], &nonce, k.sharedWith(peer))
	if !ok {
		return digest, nil, errors.New("it does not open with this run's key")
	}
	copy(digest[:], plain)
	return digest, plain[sealDigest:], nil
}

func encodeKey(k *[32]byte) string { return base64.RawURLEncoding.EncodeToString(k[:]) }

// parseKey reads a public key as a header carries it: 32 bytes, base64url without padding.
func parseKey(s string) (*[32]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("a key is 32 bytes in unpadded base64url, not %q", s)
	}
	k := new([32]byte)
	copy(k[:], b)
	return k, nil
}
