package chat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseFraming(t *testing.T) {
	for _, f := range []Framing{Raw, Line, Frame} {
		got, err := ParseFraming(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFraming(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
		text, err := f.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Framing
		if err := back.UnmarshalText(text); err != nil || back != f {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, f)
		}
	}
	_, err := ParseFraming("LINE")
	if err == nil || !strings.Contains(err.Error(), "raw, line, frame") {
		t.Errorf(`ParseFraming("LINE") error = %v; want one listing the valid names`, err)
	}
	if got := Framing(9).String(); got != "Framing(9)" {
		t.Errorf("Framing(9).String() = %q", got)
	}
	if _, err := Framing(9).MarshalText(); err == nil {
		t.Error("Framing(9).MarshalText() succeeded")
	}

	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	f := Line
	fs.Var(&f, "framing", "")
	if err := fs.Parse([]string{"--framing=frame"}); err != nil || f != Frame {
		t.Errorf("--framing=frame: got %v, %v", f, err)
	}
	if err := fs.Parse([]string{"--framing=lines"}); err == nil {
		t.Error("--framing=lines accepted")
	}
}

func TestLimitError(t *testing.T) {
	var err error = &LimitError{Framing: Frame, Size: 70000, Max: 65536}
	if !errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrLineTooLong) {
		t.Errorf("%v: errors.Is does not match the frame sentinel only", err)
	}
	if got, want := err.Error(), "chat: frame length above the message limit (70000 > 65536)"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	err = &LimitError{Framing: Line, Max: 8}
	if !errors.Is(err, ErrLineTooLong) {
		t.Errorf("%v: errors.Is(ErrLineTooLong) = false", err)
	}
	if got, want := err.Error(), "chat: line longer than the message limit (no newline in 8 bytes)"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

// frame returns payload with its header.
func frame(payload string) string {
	return string(binary.BigEndian.AppendUint32(nil, uint32(len(payload)))) + payload
}

// bytewise cuts s into 1-byte chunks.
func bytewise(s string) []string {
	var chunks []string
	for i := range len(s) {
		chunks = append(chunks, s[i:i+1])
	}
	return chunks
}

func TestSplitter(t *testing.T) {
	tests := []struct {
		name    string
		framing Framing
		max     int
		chunks  []string
		runs    []string
		pending int   // at the end, if no error
		err     error // expected after the runs
		errAt   int   // index of the chunk that fails
	}{
		{name: "raw", framing: Raw, max: 4, chunks: []string{"abc", "defghij"}, runs: []string{"abc", "defghij"}},
		{name: "raw/bytes", framing: Raw, chunks: bytewise("ab"), runs: []string{"a", "b"}},

		{name: "line/one", framing: Line, max: 64, chunks: []string{"hi\n"}, runs: []string{"hi\n"}},
		{name: "line/many", framing: Line, max: 64, chunks: []string{"a\nb\n\nc\n"}, runs: []string{"a\nb\n\nc\n"}},
		{name: "line/crlf", framing: Line, max: 64, chunks: []string{"a\r\nb\r", "\n"}, runs: []string{"a\r\n", "b\r\n"}},
		{name: "line/partial", framing: Line, max: 64, chunks: []string{"a\nb\nc", "d\ne"},
			runs: []string{"a\nb\n", "cd\n"}, pending: 1},
		{name: "line/bytes", framing: Line, max: 64, chunks: bytewise("ab\n\ncd\n"), runs: []string{"ab\n", "\n", "cd\n"}},
		{name: "line/at-limit", framing: Line, max: 4, chunks: []string{"abc\n", "ab", "c\n"}, runs: []string{"abc\n", "abc\n"}},
		{name: "line/at-limit-bytes", framing: Line, max: 4, chunks: bytewise("abc\n"), runs: []string{"abc\n"}},
		{name: "line/over", framing: Line, max: 4, chunks: []string{"abcd\n"}, err: ErrLineTooLong},
		{name: "line/over-after-good", framing: Line, max: 4, chunks: []string{"a\nabcdefgh\nb\n"}, runs: []string{"a\n"}, err: ErrLineTooLong},
		// Four bytes without '\n' already make a line over 4: no need to wait for more.
		{name: "line/over-carried", framing: Line, max: 4, chunks: []string{"x\nab", "cd", "\n"}, runs: []string{"x\n"}, err: ErrLineTooLong, errAt: 1},
		{name: "line/over-bytes", framing: Line, max: 4, chunks: bytewise("abcd\n"), err: ErrLineTooLong, errAt: 3},
		{name: "line/zero-limit", framing: Line, max: 0, chunks: []string{"\n"}, err: ErrLineTooLong},

		{name: "frame/one", framing: Frame, max: 64, chunks: []string{frame("hi")}, runs: []string{frame("hi")}},
		{name: "frame/empty", framing: Frame, max: 64, chunks: []string{frame("") + frame("") + frame("a")},
			runs: []string{frame("") + frame("") + frame("a")}},
		{name: "frame/empty-bytes", framing: Frame, max: 64, chunks: bytewise(frame("") + frame("")),
			runs: []string{frame(""), frame("")}},
		{name: "frame/many-partial", framing: Frame, max: 64,
			chunks: []string{frame("a") + frame("bc") + frame("def") + frame("ghij")[:5], frame("ghij")[5:] + frame("k")[:2]},
			runs:   []string{frame("a") + frame("bc") + frame("def"), frame("ghij")}, pending: 2},
		{name: "frame/header-split", framing: Frame, max: 64, chunks: []string{"\x00\x00", "\x00\x02h", "i"}, runs: []string{frame("hi")}},
		{name: "frame/bytes", framing: Frame, max: 64, chunks: bytewise(frame("hi") + frame("there")),
			runs: []string{frame("hi"), frame("there")}},
		{name: "frame/at-limit", framing: Frame, max: 4, chunks: []string{frame("abcd"), frame("abcd")[:3], frame("abcd")[3:]},
			runs: []string{frame("abcd"), frame("abcd")}},
		{name: "frame/zero-limit", framing: Frame, max: 0, chunks: []string{frame("")}, runs: []string{frame("")}},
		// The header alone is enough to refuse the frame.
		{name: "frame/over", framing: Frame, max: 4, chunks: []string{frame("abcde")[:4]}, err: ErrFrameTooLarge},
		{name: "frame/over-after-good", framing: Frame, max: 4, chunks: []string{frame("ab") + frame("abcde")}, runs: []string{frame("ab")}, err: ErrFrameTooLarge},
		{name: "frame/over-split", framing: Frame, max: 4, chunks: []string{frame("a") + "\x00\x00", "\x00\x05"}, runs: []string{frame("a")}, err: ErrFrameTooLarge, errAt: 1},
		{name: "frame/over-huge", framing: Frame, max: 1 << 20, chunks: []string{"\xff\xff\xff\xff"}, err: ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSplitter(tt.framing, tt.max)
			defer s.reset()
			var runs []string
			var err error
			errAt := -1
		feed:
			for i, chunk := range tt.chunks {
				for in := []byte(chunk); len(in) > 0; {
					var run []byte
					if run, in, err = s.next(in); err != nil {
						errAt = i
						break feed
					}
					if len(run) > 0 {
						runs = append(runs, string(run))
					}
				}
			}
			if strings.Join(runs, "|") != strings.Join(tt.runs, "|") {
				t.Errorf("runs = %q; want %q", runs, tt.runs)
			}
			if tt.err != nil {
				if !errors.Is(err, tt.err) || errAt != tt.errAt {
					t.Fatalf("error %v at chunk %d; want %v at chunk %d", err, errAt, tt.err, tt.errAt)
				}
				if _, _, again := s.next([]byte("\n")); again != err {
					t.Errorf("after the error, next returned %v", again)
				}
				if s.carry != nil {
					t.Error("buffer held after an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v at chunk %d", err, errAt)
			}
			if got := s.pending(); got != tt.pending {
				t.Errorf("pending() = %d; want %d", got, tt.pending)
			}
		})
	}
}

// TestSplitterBuffer checks that a buffer is held only while a message is
// incomplete and that reset drops a partial message.
func TestSplitterBuffer(t *testing.T) {
	for _, tt := range []struct {
		framing  Framing
		msg      string
		max, cut int
	}{
		{Line, "hello\n", 64, 3},
		{Line, strings.Repeat("x", 9999) + "\n", 10000, 5000}, // grows through size classes
		{Frame, frame("hello"), 64, 2},
		{Frame, frame(strings.Repeat("x", 70000)), 1 << 20, 1000},
	} {
		s := newTestSplitter(tt.framing, tt.max)
		msg := []byte(tt.msg)
		if run, rest, err := s.next(msg); string(run) != tt.msg || len(rest) != 0 || err != nil || s.carry != nil {
			t.Fatalf("%v: whole message: run %d bytes, rest %d, %v, holds buffer %v", tt.framing, len(run), len(rest), err, s.carry != nil)
		}

		s.next(msg[:tt.cut])
		if s.pending() != tt.cut || s.carry == nil {
			t.Fatalf("%v: pending() = %d, holds buffer %v after a partial of %d", tt.framing, s.pending(), s.carry != nil, tt.cut)
		}
		s.reset()
		if s.pending() != 0 || s.carry != nil {
			t.Fatalf("%v: pending() = %d, holds buffer %v after reset", tt.framing, s.pending(), s.carry != nil)
		}
		// The dropped partial must not leak into the next message.
		if run, _, err := s.next(msg); string(run) != tt.msg || err != nil {
			t.Fatalf("%v: after reset: run %d bytes, %v", tt.framing, len(run), err)
		}

		s.next(msg[:tt.cut])
		run, rest, err := s.next(msg[tt.cut:])
		if string(run) != tt.msg || len(rest) != 0 || err != nil || s.pending() != 0 {
			t.Fatalf("%v: completed message: run %d bytes, rest %d, %v, pending %d", tt.framing, len(run), len(rest), err, s.pending())
		}
		if run, rest, err := s.next(nil); run != nil || rest != nil || err != nil || s.carry != nil {
			t.Fatalf("%v: next(nil) = %q, %q, %v; holds buffer %v", tt.framing, run, rest, err, s.carry != nil)
		}
	}
}

// refSplit is a plain reference parser: it returns the whole messages at the
// start of data, and whether the message after them is provably over max.
func refSplit(f Framing, max int, data []byte) (msgs [][]byte, over bool) {
	switch f {
	case Raw:
		if len(data) > 0 {
			msgs = append(msgs, data)
		}
	case Line:
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				// max bytes without '\n' make a line of at least max+1.
				return msgs, len(data) > 0 && len(data) >= max
			}
			if i+1 > max {
				return msgs, true
			}
			msgs, data = append(msgs, data[:i+1]), data[i+1:]
		}
	case Frame:
		for len(data) >= 4 {
			n := int64(binary.BigEndian.Uint32(data))
			if n > int64(max) {
				return msgs, true
			}
			if int64(len(data)-4) < n {
				break
			}
			msgs, data = append(msgs, data[:4+n]), data[4+n:]
		}
	}
	return msgs, false
}

// checkSplit feeds data to a splitter in chunks of the sizes that size
// returns (0: call next with an empty in, then feed 1 byte), and checks the
// runs against refSplit.
func checkSplit(t *testing.T, f Framing, max int, data []byte, size func() int) {
	t.Helper()
	s := newTestSplitter(f, max)
	defer s.reset()
	var got []byte
	var err error
	for rest := data; len(rest) > 0 && err == nil; {
		n := size()
		if n == 0 {
			before := s.pending()
			if run, in, err := s.next(nil); run != nil || in != nil || err != nil || s.pending() != before {
				t.Fatalf("next(nil) = %q, %q, %v; pending %d -> %d", run, in, err, before, s.pending())
			}
			n = 1
		}
		in := rest[:min(n, len(rest))]
		rest = rest[len(in):]
		for len(in) > 0 {
			var run []byte
			if run, in, err = s.next(in); err != nil {
				break
			}
			if f != Raw && len(run) > 0 {
				if msgs, over := refSplit(f, max, run); over || len(bytes.Join(msgs, nil)) != len(run) {
					t.Fatalf("run %q is not made of whole messages", run)
				}
			}
			got = append(got, run...)
		}
	}
	msgs, over := refSplit(f, max, data)
	want := bytes.Join(msgs, nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("runs make\n%q\nwant\n%q", got, want)
	}
	switch {
	case err == nil && over:
		t.Fatalf("no error; the reference parser finds an over-limit message after %d bytes", len(want))
	case err != nil && !over:
		t.Fatalf("error %v; the reference parser finds none", err)
	case err != nil && !errors.Is(err, map[Framing]error{Line: ErrLineTooLong, Frame: ErrFrameTooLarge}[f]):
		t.Fatalf("error %v is not the %v limit error", err, f)
	case err == nil && s.pending() != len(data)-len(want):
		t.Fatalf("pending() = %d; want %d", s.pending(), len(data)-len(want))
	}
}

// TestSplitterRandom cuts random message streams at random points.
func TestSplitterRandom(t *testing.T) {
	const max = 10000 // large enough to go through buffer size classes
	for _, f := range []Framing{Raw, Line, Frame} {
		for seed := range uint64(50) {
			r := rand.New(rand.NewPCG(seed, uint64(f)))
			var data []byte
			for range 1 + r.IntN(100) {
				var size int
				switch r.IntN(10) {
				case 0:
					size = r.IntN(max + 1)
				case 1:
					size = 0
				default:
					size = r.IntN(100)
				}
				msg := make([]byte, size)
				for i := range msg {
					msg[i] = byte(r.IntN(256))
				}
				if f == Frame {
					data = binary.BigEndian.AppendUint32(data, uint32(size))
				} else if f == Line {
					msg = bytes.ReplaceAll(msg, []byte("\n"), []byte("."))
					if size > 0 {
						msg[size-1] = '\n'
					}
				}
				data = append(data, msg...)
			}
			if len(data) > 0 && r.IntN(2) == 0 {
				data = data[:len(data)-r.IntN(min(len(data), 50))] // a partial message at the end
			}
			mean := 1 + r.IntN(2000)
			checkSplit(t, f, max, data, func() int { return r.IntN(2 * mean) })
		}
	}
}

func fuzzSplit(f *testing.F, framing Framing, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s), []byte{1}, uint8(64))
		f.Add([]byte(s), []byte{3, 0, 7, 200}, uint8(4))
		f.Add([]byte(s), []byte{255}, uint8(0))
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte, limit uint8) {
		i := 0
		checkSplit(t, framing, int(limit%100), data, func() int {
			if len(cuts) == 0 {
				return len(data)
			}
			i++
			return int(cuts[(i-1)%len(cuts)])
		})
	})
}

func FuzzSplitLine(f *testing.F) {
	fuzzSplit(f, Line, "", "\n", "hello\r\nworld\n", "a\nb\nc", strings.Repeat("x", 70)+"\n")
}

func FuzzSplitFrame(f *testing.F) {
	fuzzSplit(f, Frame, "", frame(""), frame("hello")+frame("")+frame("world")[:6],
		frame(strings.Repeat("x", 64)), frame(strings.Repeat("x", 65)), "\xff\xff\xff\xff")
}

// stream returns one read's worth of a stream of 64-byte messages, cut
// in the middle of a message at both ends so that every read carries one, and
// the first half message to feed before it.
func stream(f Framing) (first, read []byte) {
	msg := []byte(strings.Repeat("m", 63) + "\n")
	if f == Frame {
		msg = []byte(frame(strings.Repeat("m", 60)))
	}
	var data []byte
	for range 16<<10/64 + 1 {
		data = append(data, msg...)
	}
	return data[:32], data[32 : 32+16<<10]
}

func BenchmarkSplit(b *testing.B) {
	for _, f := range []Framing{Raw, Line, Frame} {
		b.Run(f.String(), func(b *testing.B) {
			first, read := stream(f)
			s := newTestSplitter(f, 64<<10)
			s.next(first)
			b.SetBytes(int64(len(read)))
			b.ReportAllocs()
			for b.Loop() {
				for in := read; len(in) > 0; {
					var err error
					if _, in, err = s.next(in); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func TestSplitterNoAllocs(t *testing.T) {
	for _, f := range []Framing{Raw, Line, Frame} {
		_, read := stream(f)
		read = read[32 : 32+64*200] // whole messages only
		s := newTestSplitter(f, 64<<10)
		allocs := testing.AllocsPerRun(100, func() {
			n := 0
			for in := read; len(in) > 0; {
				run, rest, err := s.next(in)
				if len(run) == 0 || err != nil {
					t.Fatalf("%v: run %d bytes, rest %d, %v", f, len(run), len(rest), err)
				}
				n += len(run)
				in = rest
			}
			if n != len(read) {
				t.Fatalf("%v: runs of %d bytes in all, want %d", f, n, len(read))
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per read of whole messages", f, allocs)
		}
	}
}

// TestSplitterRunMax: a read full of empty messages comes out, while the
// splitter is short, in runs of at most runMax messages, every byte of it,
// so that a flooder's share of a contended room is measured between them
// (flow.go).
func TestSplitterRunMax(t *testing.T) {
	for _, f := range []Framing{Line, Frame} {
		const total = 1000
		var read []byte
		for range total {
			if f == Line {
				read = append(read, '\n')
			} else {
				read = append(read, 0, 0, 0, 0)
			}
		}
		s := newTestSplitter(f, 64)
		s.short = true
		msgs, runs := 0, 0
		for in := read; len(in) > 0; runs++ {
			run, rest, err := s.next(in)
			if err != nil {
				t.Fatalf("%v: %v", f, err)
			}
			k := s.taken()
			if k < 1 || k > runMax {
				t.Fatalf("%v: a run of %d messages, want 1 to %d", f, k, runMax)
			}
			if len(run)+len(rest) != len(in) {
				t.Fatalf("%v: run %d + rest %d bytes of %d", f, len(run), len(rest), len(in))
			}
			msgs += k
			in = rest
		}
		if want := (total + runMax - 1) / runMax; msgs != total || runs != want {
			t.Errorf("%v: %d messages in %d runs, want %d in %d", f, msgs, runs, total, want)
		}
	}
}

// testSplitter is a splitter with the limit of its messages, which a
// session's caller keeps.
type testSplitter struct {
	splitter
	limit int
}

func newTestSplitter(f Framing, limit int) *testSplitter {
	return &testSplitter{newSplitter(f), splitLimit(limit)}
}

func (s *testSplitter) next(in []byte) (run, rest []byte, err error) {
	return s.splitter.next(in, s.limit)
}
