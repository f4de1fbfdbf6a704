package load

import (
	"bytes"
	"testing"

	"cport.dev/cport/chat"
)

// bodyOf strips the framing from one whole message.
func bodyOf(cd *codec, msg []byte) []byte {
	if cd.framing == chat.Frame {
		return msg[4:]
	}
	return msg[:len(msg)-1]
}

func TestCodecRoundTrip(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		for _, size := range []int{MinSize(f), 64, 1000} {
			cd, err := newCodec(f, size)
			if err != nil {
				t.Fatal(err)
			}
			h := header{kind: kindData, sender: 7, seq: 123456789, time: 987654321}
			msg := cd.append(nil, h)
			if len(msg) != cd.wire {
				t.Fatalf("%s/%d: message of %d bytes, want %d", f, size, len(msg), cd.wire)
			}
			if f == chat.Line && bytes.IndexByte(msg, '\n') != len(msg)-1 {
				t.Fatalf("%s/%d: a line holds a newline before its end: %q", f, size, msg)
			}
			got, st := cd.parse(bodyOf(cd, msg))
			if st != intact || got != h {
				t.Fatalf("%s/%d: parse = %+v, %v; want %+v, intact", f, size, got, st, h)
			}
		}
	}
}

func TestCodecSizeLimits(t *testing.T) {
	if _, err := newCodec(chat.Frame, MinSize(chat.Frame)-1); err == nil {
		t.Error("a frame below the minimum size was accepted")
	}
	if _, err := newCodec(chat.Line, MinSize(chat.Line)-1); err == nil {
		t.Error("a line below the minimum size was accepted")
	}
	if _, err := newCodec(chat.Raw, 64); err == nil {
		t.Error("raw framing was accepted")
	}
}

// Changing any byte of a message, or its length, is detected.
func TestCodecDetectsCorruption(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		cd, err := newCodec(f, 64)
		if err != nil {
			t.Fatal(err)
		}
		body := bodyOf(cd, cd.append(nil, header{kind: kindData, sender: 3, seq: 42, time: 1e9}))
		for i := range body {
			for _, delta := range []byte{1, 0x20, 0x80} {
				b := bytes.Clone(body)
				b[i] ^= delta
				if _, st := cd.parse(b); st == intact {
					t.Fatalf("%s: byte %d xor %#x went unnoticed", f, i, delta)
				}
			}
		}
		if _, st := cd.parse(body[:len(body)-1]); st == intact {
			t.Errorf("%s: a truncated message went unnoticed", f)
		}
		if _, st := cd.parse(append(bytes.Clone(body), 'x')); st == intact {
			t.Errorf("%s: a longer message went unnoticed", f)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	cd, err := newCodec(chat.Frame, 64)
	if err != nil {
		b.Fatal(err)
	}
	body := bodyOf(cd, cd.append(nil, header{kind: kindData, sender: 3, seq: 42, time: 1e9}))
	b.ReportAllocs()
	for b.Loop() {
		if _, st := cd.parse(body); st != intact {
			b.Fatal(st)
		}
	}
}

func TestParseHex8(t *testing.T) {
	for _, v := range []uint32{0, 1, 9, 10, 15, 16, 0x9a, 0xdeadbeef, 0x01234567, 0x89abcdef, 0xffffffff} {
		b := appendHex(nil, uint64(v), 8)
		got, ok := parseHex8(b)
		if !ok || got != v {
			t.Errorf("parseHex8(%q) = %#x, %v; want %#x, true", b, got, ok, v)
		}
	}
	for _, s := range []string{"0000000A", "0000000g", "0000000/", "0000000:", "0000000`", "0000000G", "000000 0", "0000000\xe1", "0000000\x00"} {
		if v, ok := parseHex8([]byte(s)); ok {
			t.Errorf("parseHex8(%q) = %#x, true; want invalid", s, v)
		}
	}
}

func FuzzParseHex8(f *testing.F) {
	f.Add([]byte("0123abcd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 8 {
			return
		}
		v, ok := parseHex8(b)
		want := string(appendHex(nil, uint64(v), 8))
		if ok != (string(b[:8]) == want) {
			t.Fatalf("parseHex8(%q) = %#x, %v", b[:8], v, ok)
		}
	})
}

// TestParseHex8Validity checks the SWAR validity test against a
// byte-by-byte one, for every byte value at every position.
func TestParseHex8Validity(t *testing.T) {
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
	for _, base := range []string{"01234567", "89abcdef", "ffffffff", "00000000", "9a9a9a9a"} {
		for pos := range 8 {
			for c := range 256 {
				b := []byte(base)
				b[pos] = byte(c)
				want := isHex(byte(c))
				if _, got := parseHex8(b); got != want {
					t.Fatalf("parseHex8(%q) valid = %v, want %v", b, got, want)
				}
			}
		}
	}
}
