package channel

import (
	"bytes"
	"strings"
	"testing"
)

func TestStringValueRoundTrip(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", 31), strings.Repeat("y", 32), strings.Repeat("z", 300), strings.Repeat("w", 70000), "\xff\xfe not UTF-8"} {
		v := StringValue([]byte(s))
		var back []byte
		if err := Unmarshal(v, &back); err != nil || string(back) != s {
			t.Errorf("%d bytes: decoded %q, %v", len(s), back, err)
		}
		if b, ok := StrOrBin(v); !ok || string(b) != s {
			t.Errorf("%d bytes: StrOrBin %v", len(s), ok)
		}
	}
	if _, ok := StrOrBin([]byte{0x01}); ok {
		t.Error("StrOrBin took an int")
	}
	if _, ok := StrOrBin(append(StringValue([]byte("ab")), 0)); ok {
		t.Error("StrOrBin took trailing bytes")
	}
}

// CallSize is never short of the envelope, and within the id's largest form of it.
func TestCallSize(t *testing.T) {
	for _, name := range []string{"h", strings.Repeat("n", 40)} {
		for _, n := range []int{0, 10, 300, 70000} {
			payload := bytes.Repeat([]byte{0}, n)
			for _, bin := range []bool{false, true} {
				m := Message{Kind: KindCall, ID: 1, Name: name, Payload: payload}
				if bin {
					m.Payload, m.Bin = nil, payload
				}
				got, want := CallSize(name, n, bin), len(AppendMessage(nil, m))
				if got < want || got > want+8 {
					t.Errorf("%s, %d bytes, bin %v: CallSize %d, envelope %d", name, n, bin, got, want)
				}
			}
		}
	}
}
