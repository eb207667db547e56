package jetstream

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestSealOpens(t *testing.T) {
	run, machine, other := mustKeys(t), mustKeys(t), mustKeys(t)
	task, env := []byte("the task"), []byte("the result envelope")
	sealed, err := machine.seal(run.pub, task, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != len(env)+sealOverhead || bytes.Contains(sealed, env) {
		t.Fatalf("sealed: %d bytes for %d, or the envelope in the clear", len(sealed), len(env))
	}
	digest, got, err := run.open(machine.pub, sealed)
	if err != nil || !bytes.Equal(got, env) || digest != sha256.Sum256(task) {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Opened again, from the cache of shared keys.
	if _, got, err = run.open(machine.pub, sealed); err != nil || !bytes.Equal(got, env) {
		t.Fatalf("open again: %q, %v", got, err)
	}
	if _, _, err := other.open(machine.pub, sealed); err == nil {
		t.Fatal("another key pair opened the result")
	}
	if _, _, err := run.open(other.pub, sealed); err == nil {
		t.Fatal("opened as if another machine had sealed it")
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, _, err := run.open(machine.pub, bad); err == nil {
			t.Fatalf("a result changed at byte %d opened", i)
		}
	}
	if _, _, err := run.open(machine.pub, sealed[:sealOverhead-1]); err == nil {
		t.Fatal("a short result opened")
	}
}

func TestSharedKeysBounded(t *testing.T) {
	k := mustKeys(t)
	for range sharedCached + 10 {
		k.sharedWith(mustKeys(t).pub)
	}
	if n := len(k.shared); n > sharedCached {
		t.Fatalf("%d shared keys cached, more than %d", n, sharedCached)
	}
}

func TestParseKey(t *testing.T) {
	k := mustKeys(t)
	if got, err := parseKey(k.pubText); err != nil || *got != *k.pub {
		t.Fatalf("parseKey(%q): %v", k.pubText, err)
	}
	for _, bad := range []string{"", "short", k.pubText + "AA", k.pubText[:42] + "!", "=" + k.pubText[1:]} {
		if _, err := parseKey(bad); err == nil {
			t.Errorf("parseKey(%q) took it", bad)
		}
	}
}

func mustKeys(t *testing.T) *sealKeys {
	t.Helper()
	k, err := newSealKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
