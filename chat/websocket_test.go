package chat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// wsStream returns msgs as a client's frames: each message cut into up
// to three fragments, with a ping before the last, masked with keys from
// r.
func wsStream(r *rand.Rand, msgs [][]byte) []byte {
	var b []byte
	for _, m := range msgs {
		op := byte(opBinary)
		if utf8.Valid(m) {
			op = opText
		}
		cuts := []int{0}
		for range r.IntN(3) {
			cuts = append(cuts, r.IntN(len(m)+1))
		}
		cuts = append(cuts, len(m))
		for i := 1; i < len(cuts); i++ {
			lo, hi := min(cuts[i-1], cuts[i]), max(cuts[i-1], cuts[i])
			cuts[i] = hi
			first, last := i == 1, i == len(cuts)-1
			if last && !first {
				b = append(b, maskedFrame(r, 0x80|opPing, []byte("p"))...)
			}
			b0 := byte(opCont)
			if first {
				b0 = op
			}
			if last {
				b0 |= 0x80
			}
			b = append(b, maskedFrame(r, b0, m[lo:hi])...)
		}
	}
	return b
}

func maskedFrame(r *rand.Rand, b0 byte, p []byte) []byte {
	f := appendWSFrame(nil, b0&0x0F, p)
	f[0] = b0
	hlen := wsHeaderLen(len(p))
	f[1] |= 0x80
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], r.Uint32())
	out := append(f[:hlen:hlen], key[:]...)
	return unmasked(out, p, key) // masking is unmasking
}

// Messages fragmented, interleaved with pings, fed in pieces of every
// size: decoded whole, in order, and each ping answered.
func TestWSDecodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	msgs := [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte("é"), 200), {0xff, 0x00, 0xfe}, bytes.Repeat([]byte{7}, 70000)}
	stream := wsStream(r, msgs)
	var want []byte
	for _, m := range msgs {
		want = binary.BigEndian.AppendUint32(want, uint32(len(m)))
		want = append(want, m...)
	}
	for _, piece := range []int{1, 2, 3, 7, 13, 125, 126, 4096, len(stream)} {
		d := wsDecoder{limit: 1 << 20}
		var got []byte
		for b := stream; len(b) > 0; {
			n := min(piece, len(b))
			if err := d.decode(b[:n]); err != nil {
				t.Fatalf("pieces of %d: %v", piece, err)
			}
			got = append(got, d.out...)
			d.out = d.out[:0]
			b = b[n:]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("pieces of %d: decoded %d bytes; want %d", piece, len(got), len(want))
		}
		if d.pending() != 0 {
			t.Errorf("pieces of %d: %d bytes pending at the end", piece, d.pending())
		}
		pongs := bytes.Count(d.reply, []byte{0x8A, 1, 'p'})
		if want := bytes.Count(stream, []byte{0x89, 0x81}); pongs != want {
			t.Errorf("pieces of %d: %d pongs; want %d", piece, pongs, want)
		}
	}
}

// The started flag of a message begun in a receive, for MessageTimeout: a
// ping in the middle of a message does not start it again.
func TestWSDecodeStarted(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	d := wsDecoder{limit: 1024}
	if err := d.decode(maskedFrame(r, opText, []byte("a"))); err != nil || !d.started {
		t.Fatalf("first fragment: started %v, err %v; want started", d.started, err)
	}
	if err := d.decode(maskedFrame(r, 0x80|opPing, []byte("p"))); err != nil || d.started {
		t.Fatalf("a ping inside the message: started %v, err %v; want not", d.started, err)
	}
	last := maskedFrame(r, 0x80|opCont, []byte("b"))
	if err := d.decode(last[:3]); err != nil || d.started {
		t.Fatalf("part of the last fragment: started %v, err %v; want not", d.started, err)
	}
	next := maskedFrame(r, opText, []byte("x"))
	if err := d.decode(append(last[3:], next[:2]...)); err != nil || !d.started {
		t.Fatalf("the end of one message and the start of another: started %v, err %v; want started", d.started, err)
	}
	if err := d.decode(next[2:]); err != nil || d.started {
		t.Fatalf("the rest of the first fragment: started %v, err %v; want not", d.started, err)
	}
}

// FuzzWSDecode: whatever a client sends, the decoder never panics, never
// holds more than a frame over the limit, and what it decodes is whole
// frames of at most the limit; fed in two pieces, it decodes the same.
func FuzzWSDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	f.Add(wsStream(r, [][]byte{[]byte("hi"), {}, {0xff}}), 3)
	f.Add(maskedFrame(r, 0x80|opClose, []byte{0x03, 0xe8}), 1)
	f.Add([]byte{0x81, 0x02, 'h', 'i'}, 0)
	f.Add([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 5)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		const limit = 300
		whole := wsDecoder{limit: limit}
		errWhole := whole.decode(in)
		split := wsDecoder{limit: limit}
		cut = min(max(cut, 0), len(in))
		errSplit := split.decode(in[:cut])
		out := bytes.Clone(split.out)
		if errSplit == nil {
			split.out = split.out[:0] // the caller's, as relayAll takes it
			errSplit = split.decode(in[cut:])
			out = append(out, split.out...)
		}
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v; in two pieces: %v", errWhole, errSplit)
		}
		var we *WSError
		if errWhole != nil && !errors.As(errWhole, &we) {
			t.Fatalf("error %v is not a *WSError", errWhole)
		}
		if errWhole == nil && !bytes.Equal(whole.out, out) {
			t.Fatalf("decoded %q whole, %q in two pieces", whole.out, out)
		}
		for b := whole.out; len(b) > 0; {
			if len(b) < headerLen {
				t.Fatalf("a partial frame header in out: %q", b)
			}
			n := int(binary.BigEndian.Uint32(b))
			if n > limit || headerLen+n > len(b) {
				t.Fatalf("a frame of %d bytes in out (limit %d, %d left)", n, limit, len(b)-headerLen)
			}
			b = b[headerLen+n:]
		}
		if whole.pending() > limit+14+125 {
			t.Fatalf("%d bytes pending", whole.pending())
		}
	})
}
