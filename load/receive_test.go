package load

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"cport.dev/cport/chat"
)

// A chunkReader returns its chunks one read at a time, each in as many
// reads as the reader's buffer needs.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// split returns b in pieces of n bytes.
func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// received is what a receiver made of a stream.
type received struct {
	errs      Errors
	accounted int64
	unheard   int
	latencies int64
}

// receive feeds chunks to a new receiver of 2 senders, and returns what it
// made of them.
func receive(t *testing.T, f chat.Framing, chunks [][]byte) received {
	t.Helper()
	c := newTestReceiver(t, f, 2)
	if err := c.readLoop(&chunkReader{chunks: chunks}); err != nil {
		t.Fatal(err)
	}
	c.publish()
	c.flushLatencies()
	c.chk.errs.Lost = c.chk.missing([]uint64{8, 7})
	if p := c.progress.Load(); p != c.accounted {
		t.Errorf("progress %d, accounted %d", p, c.accounted)
	}
	return received{errs: c.chk.errs, accounted: c.accounted, unheard: c.unheard, latencies: c.r.lat.merged().TotalCount()}
}

// testStream returns the stream of TestChecker: every verdict, a probe.
func testStream(t *testing.T, f chat.Framing) []byte {
	c := newTestReceiver(t, f, 2)
	s := &stream{cd: c.r.codec}
	hdr := 0
	if f == chat.Frame {
		hdr = 4
	}
	s.data(0, 0, 1, 2, 3).data(0, 5).data(0, 6, 6).data(1, 0, 2, 1, 3)
	s.mangled(1, 4, hdr+offSeq).mangled(1, 5, c.r.codec.wire-2).data(1, 6)
	s.buf.Write(c.r.codec.append(nil, header{kind: kindProbe, sender: 0}))
	return s.buf.Bytes()
}

// Messages split anywhere over reads are checked as when whole: the
// stream cut in two at every byte, and read one byte at a time.
func TestReceiveSplit(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			b := testStream(t, f)
			want := receive(t, f, [][]byte{bytes.Clone(b)})
			if exp := (Errors{Lost: 3, Duplicated: 1, Reordered: 1, Corrupted: 2}); want.errs != exp || want.accounted != 13 || want.unheard != 0 {
				t.Fatalf("whole stream: %+v, want errors %+v, 13 accounted, the probe heard", want, exp)
			}
			for k := range len(b) + 1 {
				if got := receive(t, f, [][]byte{bytes.Clone(b[:k]), bytes.Clone(b[k:])}); got != want {
					t.Fatalf("cut at byte %d of %d: %+v, want %+v", k, len(b), got, want)
				}
			}
			if got := receive(t, f, split(bytes.Clone(b), 1)); got != want {
				t.Fatalf("a byte at a time: %+v, want %+v", got, want)
			}
		})
	}
}

// An oversized frame or line that spans many reads is one corrupted
// message, and the stream goes on.
func TestReceiveOversizedSplit(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		for _, n := range []int{1, 7, 4096, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", f, n), func(t *testing.T) {
				c := newTestReceiver(t, f, 1)
				s := &stream{cd: c.r.codec}
				s.data(0, 0)
				huge := bytes.Repeat([]byte{'x'}, 3*c.r.bufSize+5)
				if f == chat.Frame {
					s.buf.Write([]byte{0, byte(len(huge) >> 16), byte(len(huge) >> 8), byte(len(huge))})
					s.buf.Write(huge)
				} else {
					s.buf.Write(append(huge, '\n'))
				}
				s.data(0, 1, 2)
				if err := c.readLoop(&chunkReader{chunks: split(s.buf.Bytes(), n)}); err != nil {
					t.Fatal(err)
				}
				c.chk.errs.Lost = c.chk.missing([]uint64{3})
				if want := (Errors{Corrupted: 1}); c.chk.errs != want || c.accounted != 4 {
					t.Errorf("counted %+v, accounted %d; want %+v, 4 accounted", c.chk.errs, c.accounted, want)
				}
			})
		}
	}
}

// reads is a receiver fed reads of batch messages each, from a stream
// made beforehand, in place: as from a socket.
type reads struct {
	c      *client
	stream []byte
	read   int // bytes of a read
	off    int
}

func newReads(tb testing.TB, f chat.Framing, senders, batch int) *reads {
	cfg := Config{Framing: f, Clients: senders + 1, Senders: senders}.withDefaults()
	r, err := newRun(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r.from.Store(0)
	c := r.newClient(senders, nil) // not a sender
	c.in.buf = make([]byte, r.bufSize)
	var msgs []byte
	seq := make([]uint64, senders)
	for i := range 1 << 14 {
		s := i % senders
		msgs = r.codec.append(msgs, header{kind: kindData, sender: uint32(s), seq: seq[s], time: 1})
		seq[s]++
	}
	return &reads{c: c, stream: msgs, read: batch * r.codec.wire}
}

// next feeds the receiver one read; the stream starts over, and the
// checker with it, when it runs out.
func (rd *reads) next() {
	if rd.off+rd.read > len(rd.stream) {
		rd.off = 0
		clear(rd.c.chk.next)
	}
	c := rd.c
	n := copy(c.in.buf[c.in.end:], rd.stream[rd.off:rd.off+rd.read])
	rd.off += n
	c.received(n)
}

// Checking what a read brings allocates nothing.
func TestReceiveAllocs(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			rd := newReads(t, f, 4, 16)
			rd.next() // the first latency batch
			if allocs := testing.AllocsPerRun(1000, rd.next); allocs != 0 {
				t.Errorf("%v allocations per read of 16 messages, want 0", allocs)
			}
			c := rd.c
			if c.chk.errs != (Errors{}) || c.accounted == 0 || c.inWindow != c.accounted || c.windowReads == 0 {
				t.Errorf("errors %+v, accounted %d, in the window %d, reads %d", c.chk.errs, c.accounted, c.inWindow, c.windowReads)
			}
		})
	}
}

// BenchmarkReceive measures the receive path over one read of 16
// messages: cutting, parsing, checking, counting, latencies.
func BenchmarkReceive(b *testing.B) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		b.Run(f.String(), func(b *testing.B) {
			const batch = 16
			rd := newReads(b, f, 4, batch)
			b.ReportAllocs()
			b.SetBytes(int64(rd.read))
			for b.Loop() {
				rd.next()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
			if rd.c.chk.errs != (Errors{}) {
				b.Errorf("errors %+v", rd.c.chk.errs)
			}
		})
	}
}
