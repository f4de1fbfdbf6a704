package load

import (
	"bytes"
	"testing"

	"cport.dev/cport/chat"
)

// newTestReceiver returns a client of a run that was never connected, to
// feed crafted streams to its receive side.
func newTestReceiver(t *testing.T, f chat.Framing, senders int) *client {
	t.Helper()
	cfg := Config{Framing: f, Clients: senders, Senders: senders}.withDefaults()
	r, err := newRun(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.from.Store(0)
	return r.newClient(senders-1, nil)
}

// stream is a crafted byte stream of messages.
type stream struct {
	cd  *codec
	buf bytes.Buffer
}

func (s *stream) data(sender uint32, seqs ...uint64) *stream {
	for _, seq := range seqs {
		s.buf.Write(s.cd.append(nil, header{kind: kindData, sender: sender, seq: seq, time: 1}))
	}
	return s
}

// mangled appends a message with byte i (of the whole message) flipped.
func (s *stream) mangled(sender uint32, seq uint64, i int) *stream {
	m := s.cd.append(nil, header{kind: kindData, sender: sender, seq: seq, time: 1})
	m[i] ^= 1
	s.buf.Write(m)
	return s
}

func TestChecker(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			c := newTestReceiver(t, f, 2)
			s := &stream{cd: c.r.codec}
			hdr := 0
			if f == chat.Frame {
				hdr = 4
			}
			s.data(0, 0, 1, 2, 3)             // in order
			s.data(0, 5)                      // 4 is missing: lost
			s.data(0, 6, 6)                   // a duplicate
			s.data(1, 0, 2, 1, 3)             // 1 arrives after 2: reordered
			s.mangled(1, 4, hdr+offSeq)       // header damaged: corrupted, and 4 then lost
			s.mangled(1, 5, c.r.codec.wire-2) // padding damaged: corrupted, 5 counted as received
			s.data(1, 6)
			s.buf.Write(c.r.codec.append(nil, header{kind: kindProbe, sender: 0})) // ignored
			if err := c.readLoop(&s.buf); err != nil {
				t.Fatal(err)
			}
			c.chk.errs.Lost = c.chk.missing([]uint64{8, 7}) // sender 0 sent 7 too: lost
			want := Errors{Lost: 3, Duplicated: 1, Reordered: 1, Corrupted: 2}
			if c.chk.errs != want {
				t.Errorf("counted %+v, want %+v", c.chk.errs, want)
			}
			if c.unheard != 0 {
				t.Error("the probe went unnoticed")
			}
			// 4+1+1 of sender 0 (the duplicate excepted), 4+1+1+1 of sender 1
			// (the header-damaged one included, to end the drain).
			if c.accounted != 13 {
				t.Errorf("accounted for %d messages, want 13", c.accounted)
			}
		})
	}
}

// A line or frame far longer than the buffer is one corrupted message, and
// the stream goes on.
func TestCheckerOversized(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			c := newTestReceiver(t, f, 1)
			s := &stream{cd: c.r.codec}
			s.data(0, 0)
			huge := bytes.Repeat([]byte{'x'}, 3*c.r.bufSize)
			if f == chat.Frame {
				s.buf.Write([]byte{0, byte(len(huge) >> 16), byte(len(huge) >> 8), byte(len(huge))})
				s.buf.Write(huge)
			} else {
				s.buf.Write(append(huge, '\n'))
			}
			s.data(0, 1)
			if err := c.readLoop(&s.buf); err != nil {
				t.Fatal(err)
			}
			c.chk.errs.Lost = c.chk.missing([]uint64{2})
			if want := (Errors{Corrupted: 1}); c.chk.errs != want {
				t.Errorf("counted %+v, want %+v", c.chk.errs, want)
			}
		})
	}
}

// Gaps are tracked exactly through splits and fills.
func TestCheckerGaps(t *testing.T) {
	k := newChecker(1)
	for _, seq := range []uint64{0, 10, 5, 3, 7, 4, 9, 1} {
		k.see(0, seq)
	}
	// Seen: 0 1 3 4 5 7 9 10; missing below 11: 2 6 8; and 11, 12 were sent.
	if got := k.missing([]uint64{13}); got != 5 {
		t.Errorf("missing %d, want 5", got)
	}
	if k.errs.Reordered != 6 || k.errs.Duplicated != 0 {
		t.Errorf("counted %+v, want 6 reordered", k.errs)
	}
	if v := k.see(0, 4); v != duplicate {
		t.Errorf("a second 4 was %v, want duplicate", v)
	}
}

// Checking a message allocates nothing.
func TestHandleAllocs(t *testing.T) {
	c := newTestReceiver(t, chat.Frame, 2)
	var seq uint64
	msg := make([]byte, 0, c.r.codec.wire)
	allocs := testing.AllocsPerRun(1000, func() {
		msg = c.r.codec.append(msg[:0], header{kind: kindData, sender: 1, seq: seq, time: 1})
		seq++
		c.handle(msg[4:])
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
	if c.chk.errs != (Errors{}) || c.accounted == 0 {
		t.Errorf("errors %+v, accounted %d", c.chk.errs, c.accounted)
	}
}
