package digest

import (
	"os"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// On Linux, digest hashes with OpenSSL's libcrypto when the system has it: its SHA-512 runs
// 10-20% faster than Go's crypto/sha512 on the machines we measured (AMD EPYC, AVX2), and for
// big files the hashing is all the time there is. It is loaded at run time with purego (no cgo,
// nothing to install to build); without libcrypto, or with SUPERVISE_HASH=go, Go's
// crypto/sha512 is used. Both give the same digests (TestOpenSSLMatchesGo).

var libcrypto struct {
	once    sync.Once
	ok      bool
	md      uintptr
	newCtx  func() uintptr
	init    func(ctx, md, engine uintptr) int32
	update  func(ctx uintptr, p unsafe.Pointer, n uintptr) int32
	final   func(ctx uintptr, out unsafe.Pointer, n unsafe.Pointer) int32
	freeCtx func(ctx uintptr)
}

func loadLibcrypto() bool {
	l := &libcrypto
	l.once.Do(func() {
		if os.Getenv("SUPERVISE_HASH") == "go" {
			return
		}
		var lib uintptr
		var err error
		for _, name := range []string{"libcrypto.so.3", "libcrypto.so.1.1"} {
			if lib, err = purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL); err == nil {
				break
			}
		}
		if err != nil {
			return
		}
		syms := map[string]any{"EVP_MD_CTX_new": &l.newCtx, "EVP_DigestInit_ex": &l.init,
			"EVP_DigestUpdate": &l.update, "EVP_DigestFinal_ex": &l.final, "EVP_MD_CTX_free": &l.freeCtx}
		for name, fn := range syms {
			sym, err := purego.Dlsym(lib, name)
			if err != nil {
				return
			}
			purego.RegisterFunc(fn, sym)
		}
		sym, err := purego.Dlsym(lib, "EVP_sha512")
		if err != nil {
			return
		}
		var sha512 func() uintptr
		purego.RegisterFunc(&sha512, sym)
		l.md = sha512()
		l.ok = l.md != 0
	})
	return l.ok
}

// opensslSHA512 is one EVP digest context.
type opensslSHA512 struct{ ctx uintptr }

func newOpenSSL() (digester, bool) {
	if !loadLibcrypto() {
		return nil, false
	}
	ctx := libcrypto.newCtx()
	if ctx == 0 {
		return nil, false
	}
	return &opensslSHA512{ctx: ctx}, true
}

func (h *opensslSHA512) reset() { libcrypto.init(h.ctx, libcrypto.md, 0) }

func (h *opensslSHA512) write(p []byte) {
	if len(p) > 0 {
		libcrypto.update(h.ctx, unsafe.Pointer(unsafe.SliceData(p)), uintptr(len(p)))
	}
}

func (h *opensslSHA512) sum(dst []byte) []byte {
	var out [64]byte
	libcrypto.final(h.ctx, unsafe.Pointer(&out[0]), nil)
	return append(dst, out[:]...)
}

func (h *opensslSHA512) close() { libcrypto.freeCtx(h.ctx) }
