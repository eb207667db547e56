package supervisor

import (
	"os"
	"testing"
)

// unread says what a pipe holds: the watchdog holds a kill back while an answer waits there.
func TestUnread(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n := unread(r); n != 0 {
		t.Fatalf("an empty pipe: %d bytes unread", n)
	}
	w.Write([]byte("12345"))
	if n := unread(r); n != 5 {
		t.Fatalf("5 bytes written: %d unread", n)
	}
}
