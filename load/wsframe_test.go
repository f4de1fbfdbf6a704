package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
)

// serverFrame returns a frame as a server writes it: unmasked.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b := []byte{op, 0}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] = byte(n)
	case n <= 0xffff:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

func TestWSMask(t *testing.T) {
	key := uint32(0xa1b2c3d4)
	kb := []byte{0xa1, 0xb2, 0xc3, 0xd4}
	for n := range 40 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		orig := bytes.Clone(b)
		maskWS(b, key)
		for i := range b {
			if b[i] != orig[i]^kb[i%4] {
				t.Fatalf("%d bytes: byte %d masked to %#x, want %#x", n, i, b[i], orig[i]^kb[i%4])
			}
		}
		maskWS(b, key)
		if !bytes.Equal(b, orig) {
			t.Fatalf("%d bytes: masking twice gives %x, want %x", n, b, orig)
		}
	}
}

// A client's header parses back to what was written, with its length in
// the shortest form.
func TestWSHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 0xffff, 0x10000, 1 << 20} {
		b := appendWSHeader(nil, wsBinary, n, 0x01020304)
		if len(b) != wsClientHeaderLen(n) {
			t.Errorf("%d bytes: header of %d bytes, wsClientHeaderLen says %d", n, len(b), wsClientHeaderLen(n))
		}
		h, ok, err := parseWSHeader(b)
		if !ok || err != nil {
			t.Fatalf("%d bytes: header %x: ok %v, %v", n, b, ok, err)
		}
		if want := (wsHeader{fin: true, op: wsBinary, masked: true, key: 0x01020304, len: len(b), n: uint64(n)}); h != want {
			t.Errorf("%d bytes: parsed %+v, want %+v", n, h, want)
		}
		for k := range len(b) {
			if _, ok, err := parseWSHeader(b[:k]); ok || err != nil {
				t.Errorf("%d bytes: %d of %d header bytes: ok %v, %v; want more", n, k, len(b), ok, err)
			}
		}
	}
}

// wsFeed runs a parser of a bufSize-byte inbox over chunks, as a client
// does over reads (the inbox compacted after each), and returns the
// events it found, their payloads copied, and the error that stopped it.
func wsFeed(bufSize int, chunks [][]byte) (events []string, err error) {
	p := wsParser{max: bufSize - wsMaxHeader}
	buf := make([]byte, bufSize)
	start, end := 0, 0
	for _, chunk := range chunks {
		for len(chunk) > 0 {
			k := copy(buf[end:], chunk)
			chunk = chunk[k:]
			end += k
			for {
				ev, payload, used, err := p.next(buf[start:end])
				if used < 0 || start+used > end {
					return events, fmt.Errorf("used %d of %d bytes", used, end-start)
				}
				start += used
				if err != nil {
					return events, err
				}
				if ev == wsMore {
					break
				}
				events = append(events, wsEventString(ev, payload))
			}
			end = copy(buf, buf[start:end])
			start = 0
			if end == len(buf) {
				return events, errors.New("the inbox is full and the parser wants more")
			}
		}
	}
	return events, nil
}

// wsEventString describes an event: short payloads as they are, long ones
// by length and checksum.
func wsEventString(ev wsEvent, payload []byte) string {
	if len(payload) > 32 {
		return fmt.Sprintf("%d:%d bytes, crc %08x", ev, len(payload), crc32.ChecksumIEEE(payload))
	}
	return fmt.Sprintf("%d:%q", ev, payload)
}

// wsTestStream is a stream of every kind of frame a server may send: whole
// messages of each length form (the 64-bit one only with huge), control
// frames, a fragmented message with a ping among its fragments, and a
// close.
func wsTestStream(huge bool) ([]byte, []string) {
	var b []byte
	var want []string
	add := func(ev wsEvent, payload string, frames ...[]byte) {
		for _, f := range frames {
			b = append(b, f...)
		}
		want = append(want, wsEventString(ev, []byte(payload)))
	}
	long := string(bytes.Repeat([]byte("0123456789abcdef"), 300)) // 4800 bytes: a 16-bit length
	add(wsMessage, "hello", serverFrame(true, wsText, []byte("hello")))
	add(wsMessage, "", serverFrame(true, wsBinary, nil))
	add(wsGotPing, "are you there", serverFrame(true, wsPing, []byte("are you there")))
	add(wsMessage, long, serverFrame(true, wsBinary, []byte(long)))
	add(wsGotPong, "", serverFrame(true, wsPong, nil))
	b = append(b, serverFrame(false, wsText, []byte("frag"))...)
	add(wsGotPing, "in between", serverFrame(true, wsPing, []byte("in between")))
	b = append(b, serverFrame(false, wsCont, nil)...)
	add(wsMessage, "fragmented", serverFrame(true, wsCont, []byte("mented")))
	if huge {
		z := string(bytes.Repeat([]byte("z"), 70000)) // a 64-bit length
		add(wsMessage, z, serverFrame(true, wsBinary, []byte(z)))
	}
	add(wsMessage, "after", serverFrame(true, wsText, []byte("after")))
	add(wsGotClose, "\x03\xe8bye", serverFrame(true, wsClose, []byte("\x03\xe8bye")))
	return b, want
}

// Frames split anywhere over reads parse as when whole: the stream cut in
// two at every byte, and read one byte at a time (and with a message of
// 70,000 bytes, cut at every byte of its header and in pieces).
func TestWSParserSplit(t *testing.T) {
	const bufSize = 80 << 10
	var want []string
	check := func(what string, chunks [][]byte) {
		t.Helper()
		got, err := wsFeed(bufSize, chunks)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: events\n%.500v\nwant\n%.500v", what, got, want)
		}
	}
	var b []byte
	b, want = wsTestStream(false)
	check("whole", [][]byte{b})
	for k := range len(b) + 1 {
		check(fmt.Sprintf("cut at byte %d of %d", k, len(b)), [][]byte{b[:k], b[k:]})
	}
	check("a byte at a time", split(b, 1))

	b, want = wsTestStream(true)
	at := bytes.Index(b, []byte{0x80 | wsBinary, 127})
	for k := at; k <= at+11; k++ {
		check(fmt.Sprintf("with 70,000 bytes, cut at byte %d of %d", k, len(b)), [][]byte{b[:k], b[k:]})
	}
	for _, n := range []int{7, 1000, 4096} {
		check(fmt.Sprintf("with 70,000 bytes, in reads of %d", n), split(b, n))
	}
}

// A message longer than the inbox can hold is dropped, once, whether it
// comes in one frame or in fragments, and the stream goes on.
func TestWSParserDrops(t *testing.T) {
	const bufSize = 64
	big := bytes.Repeat([]byte("y"), 200)
	var b []byte
	b = append(b, serverFrame(true, wsBinary, big)...)          // one frame, too long
	b = append(b, serverFrame(true, wsText, []byte("a"))...)    //
	b = append(b, serverFrame(false, wsText, big[:40])...)      // fragments: too long together
	b = append(b, serverFrame(false, wsCont, big[:40])...)      //
	b = append(b, serverFrame(true, wsPing, []byte("p"))...)    // a ping among them
	b = append(b, serverFrame(true, wsCont, big[:40])...)       //
	b = append(b, serverFrame(true, wsText, []byte("b"))...)    //
	b = append(b, serverFrame(false, wsBinary, big)...)         // a first fragment too long
	b = append(b, serverFrame(true, wsCont, []byte("rest"))...) //
	b = append(b, serverFrame(true, wsText, []byte("c"))...)    //
	b = append(b, serverFrame(false, wsBinary, []byte("d"))...) // fits: kept
	b = append(b, serverFrame(true, wsCont, []byte("e"))...)    //
	want := fmt.Sprint([]string{`2:""`, `1:"a"`, `2:""`, `3:"p"`, `1:"b"`, `2:""`, `1:"c"`, `1:"de"`})
	for _, n := range []int{1, 3, 7, 50, len(b)} {
		got, err := wsFeed(bufSize, split(b, n))
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("reads of %d bytes: %v, %v; want %v", n, got, err, want)
		}
	}
}

// Frames that RFC 6455 forbids are protocol errors.
func TestWSParserErrors(t *testing.T) {
	masked := appendWSHeader(nil, wsText, 1, 0)
	cases := []struct {
		name   string
		stream []byte
	}{
		{"masked", append(masked, 'x')},
		{"reserved bit", []byte{0x80 | 0x40 | wsText, 0}},
		{"unknown opcode", []byte{0x80 | 0x3, 0}},
		{"fragmented ping", []byte{wsPing, 0}},
		{"long close", serverFrame(true, wsClose, make([]byte, 126))},
		{"continuation alone", serverFrame(true, wsCont, []byte("x"))},
		{"message in a fragmented one", append(serverFrame(false, wsText, []byte("x")), serverFrame(true, wsText, []byte("y"))...)},
		{"16-bit length below 126", []byte{0x80 | wsText, 126, 0, 5, 1, 2, 3, 4, 5}},
		{"64-bit length below 65536", []byte{0x80 | wsText, 127, 0, 0, 0, 0, 0, 0, 0, 1, 'x'}},
		{"64-bit length above 2^63", []byte{0x80 | wsText, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		if _, err := wsFeed(1024, [][]byte{c.stream}); !errors.Is(err, errWSProtocol) {
			t.Errorf("%s: %v, want a protocol error", c.name, err)
		}
	}
}

// FuzzWSParser: on any stream, the parser neither panics nor consumes
// what it was not given, and finds the same events (and error) however the
// stream is cut over reads.
func FuzzWSParser(f *testing.F) {
	b, _ := wsTestStream(false)
	f.Add(b[:200], uint16(7), uint16(3))
	f.Add(serverFrame(false, wsText, []byte("ab")), uint16(1), uint16(1))
	f.Add(append(serverFrame(true, wsBinary, make([]byte, 300)), serverFrame(true, wsPing, nil)...), uint16(100), uint16(5))
	f.Add([]byte{0x81, 126, 0, 200}, uint16(0), uint16(1))
	f.Fuzz(func(t *testing.T, stream []byte, cut, step uint16) {
		const bufSize = 256 // small, so that long frames are dropped
		whole, wholeErr := wsFeed(bufSize, [][]byte{stream})
		k := min(int(cut), len(stream))
		halves, halvesErr := wsFeed(bufSize, [][]byte{stream[:k], stream[k:]})
		pieces, piecesErr := wsFeed(bufSize, split(stream, int(step%64)+1))
		for _, got := range []struct {
			what   string
			events []string
			err    error
		}{{"cut in two", halves, halvesErr}, {"in pieces", pieces, piecesErr}} {
			if fmt.Sprint(got.events) != fmt.Sprint(whole) || fmt.Sprint(got.err) != fmt.Sprint(wholeErr) {
				t.Fatalf("%s: %v, %v; whole: %v, %v", got.what, got.events, got.err, whole, wholeErr)
			}
		}
		if wholeErr != nil && !errors.Is(wholeErr, errWSProtocol) {
			t.Fatalf("error %v, not a protocol error", wholeErr)
		}
	})
}
