// Package digest is the worker side of `supervise digest`: a Request names files, Files hashes
// them in a worker process (SHA-512, as sha512sum would, four at a time on CPUs with AVX2, or
// with OpenSSL's libcrypto when the system has it) and answers one digest per file, the
// failures by index (in sha512sum's words: Describe), and the big files it left for a task of
// their own. A worker opens only regular files, not following a link, checks with fstat that
// the file is still one, and reads it to its end.
//
// The parent side (the walk, batching, the order of output) is cmd/supervise's.
package digest
