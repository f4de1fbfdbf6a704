package chat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// busMsg builds a bus message of origin and seq around body.
func busMsg(f Framing, origin, seq uint64, body []byte) []byte {
	b := make([]byte, busHeaderLen, busHeaderLen+len(body))
	putBusHeader(b, busHeader{framing: f, origin: origin, seq: seq})
	return append(b, body...)
}

func rawRecords(runs ...string) []byte {
	var b []byte
	for _, r := range runs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

func newTestReceiver(f Framing, limit int) (*receiver, *[]string) {
	var got []string
	r := &receiver{self: 1, framing: f, limit: limit, log: slog.New(slog.DiscardHandler), stats: new(busCounters),
		deliver: func(run []byte) { got = append(got, string(run)) }, origins: make(map[uint64]*originState)}
	return r, &got
}

func TestDecodeBus(t *testing.T) {
	frames := concat(encode(Frame, "hello"), encode(Frame, "world"))
	for _, tc := range []struct {
		name string
		f    Framing
		data []byte
		ok   bool
	}{
		{"frames", Frame, busMsg(Frame, 2, 1, frames), true},
		{"lines", Line, busMsg(Line, 2, 1, []byte("a\nb\n")), true},
		{"raw records", Raw, busMsg(Raw, 2, 1, rawRecords("ab", "c")), true},
		{"short", Frame, []byte("cpb1"), false},
		{"foreign magic", Frame, append([]byte("XXXX"), busMsg(Frame, 2, 1, frames)[4:]...), false},
		{"other framing", Frame, busMsg(Line, 2, 1, []byte("a\n")), false},
		{"origin zero", Frame, busMsg(Frame, 0, 1, frames), false},
		{"seq zero", Frame, busMsg(Frame, 2, 0, frames), false},
		{"empty body: the origin's last", Frame, busMsg(Frame, 2, 1, nil), true},
		{"cut frame", Frame, busMsg(Frame, 2, 1, frames[:len(frames)-1]), false},
		{"frame over limit", Frame, busMsg(Frame, 2, 1, encode(Frame, string(make([]byte, 65)))), false},
		{"line unterminated", Line, busMsg(Line, 2, 1, []byte("a\nb")), false},
		{"line over limit", Line, busMsg(Line, 2, 1, append(bytes.Repeat([]byte("a"), 64), '\n')), false},
		{"raw cut record", Raw, busMsg(Raw, 2, 1, rawRecords("abc")[:5]), false},
		{"raw record over limit", Raw, busMsg(Raw, 2, 1, rawRecords(string(make([]byte, 65)))), false},
	} {
		_, _, err := decodeBus(tc.data, tc.f, 64)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errBusMalformed) {
			t.Errorf("%s: err = %v, want errBusMalformed", tc.name, err)
		}
	}
}

func TestReceiverRules(t *testing.T) {
	r, got := newTestReceiver(Line, 64)
	r.handle(0, 1, busMsg(Line, 2, 5, []byte("a1\n")))         // first of origin 2
	r.handle(0, 2, busMsg(Line, 1, 1, []byte("own\n")))        // own: skipped
	r.handle(0, 3, []byte("garbage"))                          // foreign: dropped
	r.handle(0, 4, busMsg(Line, 2, 7, []byte("a3\n")))         // ahead: held
	r.handle(0, 5, busMsg(Line, 2, 6, []byte("a2\na2b\n")))    // fills the gap
	r.handle(0, 6, busMsg(Line, 2, 6, []byte("a2\na2b\n")))    // republished: duplicate
	r.handle(0, 6, busMsg(Line, 3, 1, []byte("redelivery\n"))) // stream seq seen: duplicate
	r.handle(0, 10, busMsg(Line, 3, 1, []byte("b1\n")))        // 3 lost from the stream
	want := []string{"a1\n", "a2\na2b\n", "a3\n", "b1\n"}
	if len(*got) != len(want) {
		t.Fatalf("delivered %q, want %q", *got, want)
	}
	for i := range want {
		if (*got)[i] != want[i] {
			t.Fatalf("delivered %q, want %q", *got, want)
		}
	}
	st := r.stats.snapshot()
	if st.Own != 1 || st.Dropped != 1 || st.Duplicate != 2 || st.Missed != 3 || st.Delivered != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestReceiverRawRuns(t *testing.T) {
	r, got := newTestReceiver(Raw, 64)
	r.handle(0, 1, busMsg(Raw, 2, 1, rawRecords("ab", "cde")))
	if len(*got) != 2 || (*got)[0] != "ab" || (*got)[1] != "cde" {
		t.Fatalf("delivered %q", *got)
	}
}

func TestNATSBusPublishRefusesOversize(t *testing.T) {
	b, err := NewNATSBus(Config{NATS: "nats://127.0.0.1:1", Framing: Frame})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if err := b.Publish(make([]byte, natsBatchMax+1)); !errors.Is(err, ErrBusTooLarge) {
		t.Errorf("Publish(oversize) = %v, want ErrBusTooLarge", err)
	}
	if err := b.Publish(encode(Frame, "ok")); err != nil {
		t.Errorf("Publish = %v", err)
	}
	if st := b.(*natsBus).Stats(); st.Refused != 1 || st.Published != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := NewNATSBus(Config{NATS: "nats://127.0.0.1:1", Cluster: "a.b"}); err == nil {
		t.Error("NewNATSBus accepted cluster name a.b")
	}
}

// After the stream lost messages, each origin goes on from its next
// message at once, its gap counted once (by stream sequence).
func TestReceiverResyncAfterStreamGap(t *testing.T) {
	r, got := newTestReceiver(Line, 64)
	r.handle(0, 1, busMsg(Line, 2, 1, []byte("a1\n")))
	r.handle(0, 2, busMsg(Line, 2, 2, []byte("a2\n")))
	r.handle(0, 9, busMsg(Line, 2, 9, []byte("a9\n"))) // 3..8 aged out
	r.handle(0, 10, busMsg(Line, 2, 10, []byte("a10\n")))
	if want := []string{"a1\n", "a2\n", "a9\n", "a10\n"}; len(*got) != len(want) || (*got)[2] != want[2] || (*got)[3] != want[3] {
		t.Fatalf("delivered %q, want %q", *got, want)
	}
	if st := r.stats.snapshot(); st.Missed != 6 {
		t.Errorf("stats %+v, want Missed 6", st)
	}
}

// TestReceiverFirstSeenWaitsForBase: a batch of an origin first heard of
// may overtake earlier ones whose publication failed and was done again;
// its acked base says which may still come, and they are relayed, in
// order, before it.
func TestReceiverFirstSeenWaitsForBase(t *testing.T) {
	r, got := newTestReceiver(Line, 64)
	msg := func(seq, base uint64, body string) []byte {
		b := make([]byte, busHeaderLen, busHeaderLen+len(body))
		putBusHeader(b, busHeader{framing: Line, origin: 2, seq: seq, base: base})
		return append(b, body...)
	}
	r.handle(0, 1, msg(3, 1, "c\n")) // published after 1 and 2, stored before them: held
	if len(*got) != 0 {
		t.Fatalf("relayed %q before the batches it overtook", *got)
	}
	r.handle(0, 2, msg(1, 1, "a\n"))
	r.handle(0, 3, msg(2, 1, "b\n"))
	r.handle(0, 4, msg(4, 4, "d\n"))
	want := []string{"a\n", "b\n", "c\n", "d\n"}
	if !slices.Equal(*got, want) {
		t.Fatalf("relayed %q, want %q", *got, want)
	}
	if m := r.stats.missed.Load(); m != 0 {
		t.Errorf("missed %d", m)
	}

	// Batches before the first one heard of that were stored before this
	// server listened never come: once the wait is over they are skipped,
	// and not counted as missed.
	r, got = newTestReceiver(Line, 64)
	r.handle(0, 1, msg(7, 5, "g\n"))
	r.tick(time.Now().Add(reorderWait + time.Second))
	if want := []string{"g\n"}; !slices.Equal(*got, want) {
		t.Fatalf("relayed %q, want %q", *got, want)
	}
	if m := r.stats.missed.Load(); m != 0 {
		t.Errorf("missed %d for batches stored before this server listened", m)
	}
}

// A stream created again (NATS lost it): each origin goes on at the acked
// base of the next message seen, and the chat messages of the batches lost
// with the old stream are counted exactly, from the batches' counts.
func TestReceiverNewStream(t *testing.T) {
	r, got := newTestReceiver(Line, 64)
	msg := func(seq, base, count uint64, body string) []byte {
		b := make([]byte, busHeaderLen, busHeaderLen+len(body))
		putBusHeader(b, busHeader{framing: Line, origin: 2, seq: seq, base: base, count: count})
		return append(b, body...)
	}
	r.handle(0, 1, msg(1, 1, 0, "a\nb\nc\n")) // 3 messages: the next batch's count is 3
	epoch := r.newStream()
	// Batch 2 (messages 3..5) was stored in the old stream and is gone;
	// batch 3 was not acknowledged, and is published again after 4.
	r.handle(0, 2, msg(9, 9, 99, "stale\n")) // from the old stream's consumer: dropped
	r.handle(epoch, 1, msg(4, 3, 8, "i\n"))
	if len(*got) != 1 {
		t.Fatalf("delivered %q before batch 3", *got)
	}
	r.handle(epoch, 2, msg(3, 3, 6, "g\nh\n"))
	if want := []string{"a\nb\nc\n", "g\nh\n", "i\n"}; !slices.Equal(*got, want) {
		t.Fatalf("delivered %q, want %q", *got, want)
	}
	if st := r.stats.snapshot(); st.Missed != 1 || st.Lost != 3 || st.Duplicate != 0 {
		t.Errorf("stats %+v; want 1 missed batch, 3 lost messages", st)
	}
}

// A jump in an origin's batches (a stream gap) counts the chat messages
// of the batches skipped.
func TestReceiverLostCount(t *testing.T) {
	r, _ := newTestReceiver(Frame, 64)
	m := func(seq, count uint64, body []byte) []byte {
		b := make([]byte, busHeaderLen, busHeaderLen+len(body))
		putBusHeader(b, busHeader{framing: Frame, origin: 2, seq: seq, base: seq, count: count})
		return append(b, body...)
	}
	two := concat(encode(Frame, "x"), encode(Frame, ""))
	r.handle(0, 1, m(1, 0, two))
	r.handle(0, 5, m(4, 7, two)) // stream 2..4 aged out: batches 2 and 3, messages 2..6
	if st := r.stats.snapshot(); st.Missed != 3 || st.Lost != 5 {
		t.Errorf("stats %+v; want 3 missed, 5 lost messages", st)
	}
}

func TestCountMsgs(t *testing.T) {
	for _, tc := range []struct {
		f    Framing
		body []byte
		want int
	}{
		{Line, []byte("a\n\nbc\n"), 3},
		{Frame, concat(encode(Frame, "ab"), encode(Frame, ""), encode(Frame, "c")), 3},
		{Raw, rawRecords("ab", "c"), 2},
	} {
		if got := countMsgs(tc.f, tc.body); got != tc.want {
			t.Errorf("countMsgs(%v, %q) = %d, want %d", tc.f, tc.body, got, tc.want)
		}
	}
}

// An origin's empty batch is its last: relayed in order, then forgotten.
func TestReceiverOriginLeaves(t *testing.T) {
	r, got := newTestReceiver(Line, 64)
	r.handle(0, 1, busMsg(Line, 2, 1, []byte("a\n")))
	r.handle(0, 2, busMsg(Line, 2, 3, nil)) // ahead of 2: held
	if len(r.origins) != 1 {
		t.Fatalf("origin forgotten before its batch 2")
	}
	r.handle(0, 3, busMsg(Line, 2, 2, []byte("b\n")))
	if len(r.origins) != 0 || !slices.Equal(*got, []string{"a\n", "b\n"}) {
		t.Fatalf("origins %d, delivered %q; want the origin forgotten after a, b", len(r.origins), *got)
	}
	r.handle(0, 4, busMsg(Line, 3, 1, nil)) // the last of one never heard from
	if len(r.origins) != 0 || len(*got) != 2 {
		t.Fatalf("origins %d, delivered %q", len(r.origins), *got)
	}
}

// TestRelayHealthWaitsForStored: after a fault, the relay is back only
// once every batch whose publication failed is stored, and then at once,
// whatever failed since the last look. A look with no new failure while
// republished batches still await their ack is not a resumption: in
// .ci/nats-e2e's cluster-kill case a server logged "relay resumed" with
// 1,160 republished batches in flight, then "relay down" again when they
// failed once more.
func TestRelayHealthWaitsForStored(t *testing.T) {
	lb := new(logBuffer)
	b := &natsBus{log: slog.New(slog.NewTextHandler(lb, nil))}
	var h relayHealth
	t0 := time.Now()
	look := func(s int) { h.observe(b, t0.Add(time.Duration(s)*time.Second), nil) }

	look(0)
	f := inflight{}
	b.failed(&f, errors.New("nats: no response from stream"))
	b.failed(&f, errors.New("nats: no response from stream")) // the same batch, twice
	if n := b.unstored.Load(); n != 1 {
		t.Fatalf("unstored %d after two failures of one batch, want 1", n)
	}
	look(1)
	if len(lb.lines("relay down")) != 1 {
		t.Fatalf("no \"relay down\" after a failure:\n%s", lb)
	}
	look(2) // no new failure, the batch republished and not yet stored
	look(3)
	if got := lb.lines("relay resumed"); len(got) != 0 {
		t.Fatalf("relay resumed with a batch not stored: %q", got)
	}
	g := inflight{}
	b.failed(&g, errors.New("nats: no response from stream")) // another one, since the last look
	b.unstored.Add(-2)                                        // acks: both stored
	look(4)                                                   // as watch does when acks says they are stored
	if got := lb.lines("relay resumed", "down=3s"); len(got) != 1 {
		t.Fatalf("want one \"relay resumed\" down=3s once the batch is stored:\n%s", lb)
	}
	look(5)
	if len(lb.lines("relay down")) != 1 || len(lb.lines("relay resumed")) != 1 {
		t.Fatalf("the relay flapped:\n%s", lb)
	}
}
