//go:build !linux

package digest

// Outside Linux, digest hashes with Go's crypto/sha512 only.
func newOpenSSL() (digester, bool) { return nil, false }
