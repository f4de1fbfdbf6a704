package chat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport"
)

// A Bus relays messages between the servers of a cluster. A Server without
// one (the default) fans out to its own clients only, and its fast path is
// unchanged; with one, every run of whole messages a server accepts from a
// local client is relayed locally at once, as without a bus, and handed to
// Publish; the runs the bus receives from the other servers are handed to
// the deliver function given to Start, which relays them to every local
// client.
//
// Ordering: the worker that relays a run calls Publish before it is done
// with the receive completion, and cport hands a connection's completions
// to one worker at a time (Conn.RecvMulti), so two runs of one sender reach
// Publish one after the other, never concurrently. A Bus must therefore
// keep the order of its Publish calls (not just per caller) up to the
// deliver functions of the other servers, and never deliver a server's own
// runs back to it: then each message reaches every client of every server
// once, in its sender's order.
type Bus interface {
	// Start connects the bus; deliver is then called from the bus's own
	// goroutine, one call at a time, with each run of whole messages of
	// another server. deliver does not keep run after it returns.
	Start(deliver func(run []byte)) error
	// Publish hands the bus a run of whole messages accepted from a local
	// client. It must not block: it copies run and returns.
	Publish(run []byte) error
	// Close sends what it can of what was published until ctx is done,
	// and disconnects. A second call waits for the first.
	Close(ctx context.Context) error
}

// BusStats are the counters of a Bus.
type BusStats struct {
	Published int64 // runs handed to Publish and sent
	Batches   int64 // messages published on the subject (one or more runs each)
	Refused   int64 // runs refused by Publish: too large, or the publish buffer full
	Received  int64 // messages of other servers received
	Delivered int64 // runs of other servers relayed to local clients
	Own       int64 // this server's messages seen on the subject, skipped
	Dropped   int64 // foreign or malformed messages on the subject, dropped
	Duplicate int64 // messages seen twice (a republish after a lost ack), dropped
	Missed    int64 // messages of the subject lost: gone from the stream before they were read
	Lost      int64 // chat messages in the messages of the subject lost (Missed and never published)
	Replayed  int64 // messages of the subject published again after a failed acknowledgement
	Reconnect int64 // reconnections to NATS
	// Pending is how many messages of the subject were stored and not yet
	// read by this server when it read the last one (its backlog), and
	// Lag how long that last one had been stored: the relay's lag, in
	// messages and in time.
	Pending int64
	Lag     time.Duration
}

// BusStats returns the counters of the server's bus, or zeros without one.
func (s *Server) BusStats() BusStats {
	if b, ok := s.bus.(interface{ Stats() BusStats }); ok {
		return b.Stats()
	}
	return BusStats{}
}

// newBus returns the bus cfg asks for: cfg.Bus, a NATS bus when cfg.NATS
// is set, or nil.
func newBus(cfg Config) (Bus, error) {
	if cfg.Bus != nil || cfg.NATS == "" {
		return cfg.Bus, nil
	}
	return NewNATSBus(cfg)
}

// relayRemote relays a run of another server to every local client. It is
// the deliver function of the server's bus.
func (s *Server) relayRemote(run []byte) {
	s.relaying.RLock()
	defer s.relaying.RUnlock()
	if s.draining {
		return
	}
	o := outgoing{tcp: cport.MsgOf(run), src: run, srcF: s.cfg.Framing}
	n, _ := s.hub.relay(&o, nil, s.cfg.SendQueue, 0)
	bytesOut := o.bytesOut(n)
	o.tcp.Release()
	o.release()
	k := int64(1) // a raw run is one chunk
	if s.cfg.Framing != Raw {
		k = int64(countMsgs(s.cfg.Framing, run))
	}
	s.shards[len(s.shards)-1].add(&tally{relayed: 1, deliveries: int64(n), msgsOut: int64(n) * k, bytesOut: bytesOut})
}

// The wire format of a message on the cluster's subject: a header, then the
// body. The header is the magic "cpb3", the framing (one byte), the origin
// server's id, the origin's batch sequence (counting from 1), its acked
// base: the lowest sequence of the origin's not yet acknowledged by the
// stream when the batch was published, every batch before it being stored
// already (base 0 means unknown), and the origin's count of chat messages
// in the batches before this one (big-endian uint64s), from which a
// receiver counts the chat messages of the batches it lost. A batch with
// an empty body is the origin's last: it left the cluster. A batch whose
// publication failed is published again, after later ones: a server that
// first hears of an origin at sequence s waits for base..s-1 before
// relaying s. For Frame and Line, the body is whole messages back to back;
// for Raw, each run (one read) is a record: a 4-byte big-endian length,
// then the bytes.
const (
	busMagic     = "cpb3"
	busHeaderLen = len(busMagic) + 1 + 8 + 8 + 8 + 8
)

var errBusMalformed = errors.New("chat: malformed bus message")

// busHeader is the decoded header of a bus message.
type busHeader struct {
	framing Framing
	origin  uint64
	seq     uint64
	base    uint64 // 0, or at most seq
	count   uint64 // the origin's chat messages before this batch
}

func putBusHeader(b []byte, h busHeader) {
	copy(b, busMagic)
	b[4] = byte(h.framing)
	binary.BigEndian.PutUint64(b[5:], h.origin)
	binary.BigEndian.PutUint64(b[13:], h.seq)
	binary.BigEndian.PutUint64(b[21:], h.base)
	binary.BigEndian.PutUint64(b[29:], h.count)
}

// countMsgs returns the chat messages in a body of whole messages (Raw:
// its records).
func countMsgs(f Framing, body []byte) int {
	switch f {
	case Line:
		return bytes.Count(body, []byte{'\n'})
	case Frame:
		n := 0
		for len(body) >= headerLen {
			body = body[min(len(body), headerLen+int(binary.BigEndian.Uint32(body))):]
			n++
		}
		return n
	}
	n := 0
	for len(body) >= 4 {
		body = body[min(len(body), 4+int(binary.BigEndian.Uint32(body))):]
		n++
	}
	return n
}

// decodeBus checks a bus message against the server's framing and message
// limit and returns its header and body: the body must be whole messages,
// none above limit (for Raw, records of at most limit bytes each).
func decodeBus(data []byte, f Framing, limit int) (busHeader, []byte, error) {
	if len(data) < busHeaderLen || string(data[:4]) != busMagic {
		return busHeader{}, nil, errBusMalformed
	}
	h := busHeader{framing: Framing(data[4]), origin: binary.BigEndian.Uint64(data[5:]),
		seq: binary.BigEndian.Uint64(data[13:]), base: binary.BigEndian.Uint64(data[21:]),
		count: binary.BigEndian.Uint64(data[29:])}
	body := data[busHeaderLen:]
	if h.framing != f || h.origin == 0 || h.seq == 0 || h.base > h.seq {
		return h, nil, fmt.Errorf("%w: framing %v (want %v), origin %x, seq %d, base %d, %d bytes",
			errBusMalformed, h.framing, f, h.origin, h.seq, h.base, len(body))
	}
	if f == Raw {
		for b := body; len(b) > 0; {
			if len(b) < 4 {
				return h, nil, fmt.Errorf("%w: cut record", errBusMalformed)
			}
			n := binary.BigEndian.Uint32(b)
			if n == 0 || uint64(n) > uint64(limit) || uint64(n) > uint64(len(b)-4) {
				return h, nil, fmt.Errorf("%w: record of %d bytes (limit %d)", errBusMalformed, n, limit)
			}
			b = b[4+n:]
		}
		return h, body, nil
	}
	sp := newSplitter(f)
	if n, err := sp.whole(body, 0, splitLimit(limit)); err != nil || n != len(body) {
		return h, nil, fmt.Errorf("%w: not whole messages within %d bytes (%d of %d whole): %v", errBusMalformed, limit, n, len(body), err)
	}
	return h, body, nil
}

// forEachRun calls f with each run of a body decodeBus accepted.
func forEachRun(f Framing, body []byte, deliver func([]byte)) {
	if f != Raw {
		deliver(body)
		return
	}
	for len(body) > 0 {
		n := binary.BigEndian.Uint32(body)
		deliver(body[4 : 4+n])
		body = body[4+n:]
	}
}

// reorderWait bounds how long a message of an origin that arrived ahead of
// an earlier one (republished after a lost acknowledgement) is held back
// waiting for it, before the earlier one is counted as missed.
const reorderWait = 10 * time.Second

// A receiver applies the rules of the subject to the messages read from it,
// in stream order: drop the foreign and malformed, skip the server's own,
// drop duplicates, restore each origin's order, count what the stream lost.
type receiver struct {
	self    uint64
	framing Framing
	limit   int
	log     *slog.Logger
	stats   *busCounters
	deliver func([]byte)

	mu         sync.Mutex
	epoch      uint64 // the stream read: messages of an earlier one are dropped (newStream)
	lastStream uint64 // stream sequence of the last message read
	origins    map[uint64]*originState
}

type originState struct {
	resync bool              // the stream lost messages: skip to the next one seen
	rebase bool              // the stream is new: skip to the acked base of the next one seen
	fresh  bool              // nothing of the origin relayed yet: what never comes before next was not for this server
	next   uint64            // the origin sequence to relay next
	count  uint64            // the origin's chat messages before next (0 until one is relayed)
	held   map[uint64][]byte // arrived ahead of next (header and body)
	since  time.Time         // when the oldest held one arrived
	left   bool              // its last batch was relayed: forget it
}

type busCounters struct {
	published, batches, refused, received, delivered atomic.Int64
	own, dropped, duplicate, missed, lost            atomic.Int64
	replayed, reconnects                             atomic.Int64
	pending, lag                                     atomic.Int64 // of the last message read (BusStats.Pending, Lag)
}

func (c *busCounters) snapshot() BusStats {
	return BusStats{
		Published: c.published.Load(), Batches: c.batches.Load(), Refused: c.refused.Load(),
		Received: c.received.Load(), Delivered: c.delivered.Load(), Own: c.own.Load(),
		Dropped: c.dropped.Load(), Duplicate: c.duplicate.Load(), Missed: c.missed.Load(),
		Lost: c.lost.Load(), Replayed: c.replayed.Load(), Reconnect: c.reconnects.Load(),
		Pending: c.pending.Load(), Lag: time.Duration(c.lag.Load()),
	}
}

// newStream starts reading a stream anew, returning its epoch: the stream
// was created again (NATS lost it, memory storage), its sequences start
// over, and what each origin had stored in the old one and this server
// had not read is lost: each origin goes on at the acked base of the next
// message seen, and counts what was lost before it.
func (r *receiver) newStream() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epoch++
	r.lastStream = 0
	for _, o := range r.origins {
		o.rebase, o.resync = true, false
	}
	return r.epoch
}

// handle takes one message read at stream sequence seq from the stream of
// epoch (0 until newStream).
func (r *receiver) handle(epoch, seq uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if epoch != r.epoch {
		return // the stream it came from is gone
	}
	if r.lastStream != 0 {
		if seq <= r.lastStream {
			r.stats.duplicate.Add(1)
			return
		}
		if gap := seq - r.lastStream - 1; gap > 0 {
			r.stats.missed.Add(int64(gap))
			r.log.Warn("bus: messages missed, gone from the stream before they were read",
				"missed", gap, "from_seq", r.lastStream+1, "to_seq", seq-1)
			for _, o := range r.origins {
				o.resync = true // their gaps are these, counted already
			}
		}
	}
	r.lastStream = seq
	h, body, err := decodeBus(data, r.framing, r.limit)
	if err != nil {
		r.stats.dropped.Add(1)
		r.log.Warn("bus: message dropped", "seq", seq, "bytes", len(data), "err", err.Error())
		return
	}
	if h.origin == r.self {
		r.stats.own.Add(1)
		return
	}
	r.stats.received.Add(1)
	o := r.origins[h.origin]
	if o == nil && len(body) == 0 {
		return // the last batch of a server never heard from
	}
	if o == nil {
		// First seen: start here (what came before this server was
		// listening is not for its clients), or at the origin's acked
		// base: batches from there on may be published again, after
		// this one.
		o = &originState{next: h.seq, fresh: true}
		if h.base > 0 {
			o.next = h.base
		}
		r.origins[h.origin] = o
		r.log.Info("bus: server joined", "origin", fmt.Sprintf("%016x", h.origin))
	}
	if o.rebase {
		o.rebase = false
		if h.base > o.next {
			r.countMissed(h.origin, o, h.base-o.next, "gone with the stream")
			r.skipTo(o, h.base)
		}
	}
	if o.resync {
		o.resync = false
		if h.seq > o.next {
			r.skipTo(o, h.seq)
		}
	}
	switch {
	case h.seq < o.next || o.held[h.seq] != nil:
		r.stats.duplicate.Add(1)
		return
	case h.seq > o.next:
		if o.held == nil {
			o.held = make(map[uint64][]byte)
		}
		if len(o.held) == 0 {
			o.since = time.Now()
		}
		o.held[h.seq] = append([]byte(nil), data...)
		r.expire(h.origin, o, time.Now())
		return
	}
	r.relay(o, h, body)
	o.next++
	o.fresh = false
	r.drain(o)
	r.forget(h.origin, o)
}

// forget drops the state of an origin that left the cluster.
func (r *receiver) forget(origin uint64, o *originState) {
	if o.left {
		delete(r.origins, origin)
		r.log.Info("bus: server left", "origin", fmt.Sprintf("%016x", origin))
	}
}

// relay delivers body, the batch h of o, and counts the chat messages of
// o's batches lost before it.
func (r *receiver) relay(o *originState, h busHeader, body []byte) {
	if o.count > 0 && h.count > o.count {
		r.stats.lost.Add(int64(h.count - o.count))
	}
	o.count = h.count + uint64(countMsgs(r.framing, body))
	if len(body) == 0 {
		o.left = true
		return
	}
	forEachRun(r.framing, body, func(run []byte) {
		r.deliver(run)
		r.stats.delivered.Add(1)
	})
}

// relayHeld relays a message held with its header, which decodeBus
// accepted when it arrived.
func (r *receiver) relayHeld(o *originState, data []byte) {
	h, body, _ := decodeBus(data, r.framing, r.limit)
	r.relay(o, h, body)
}

// countMissed counts n messages of origin lost for the reason why.
func (r *receiver) countMissed(origin uint64, o *originState, n uint64, why string) {
	r.stats.missed.Add(int64(n))
	r.log.Warn("bus: messages of a server missed, "+why, "missed", n, "origin", fmt.Sprintf("%016x", origin))
}

// drain relays the held messages that are now next.
func (r *receiver) drain(o *originState) {
	for len(o.held) > 0 {
		b, ok := o.held[o.next]
		if !ok {
			o.since = time.Now()
			return
		}
		delete(o.held, o.next)
		r.relayHeld(o, b)
		o.next++
	}
}

// expire gives up waiting for the missing messages of o once its held ones
// have waited reorderWait, or too many are held.
func (r *receiver) expire(origin uint64, o *originState, now time.Time) {
	if len(o.held) == 0 || (now.Sub(o.since) < reorderWait && len(o.held) < 4096) {
		return
	}
	first := uint64(0)
	for seq := range o.held {
		if first == 0 || seq < first {
			first = seq
		}
	}
	if gap := first - o.next; o.fresh {
		// Stored before this server listened, though unacknowledged when
		// the first one it heard of was published: not for its clients.
		o.fresh = false
	} else {
		r.countMissed(origin, o, gap, "never published")
	}
	o.next = first
	r.drain(o)
}

// skipTo relays the held messages of o before seq, in order, and makes seq
// the next.
func (r *receiver) skipTo(o *originState, seq uint64) {
	var early []uint64
	for s := range o.held {
		if s < seq {
			early = append(early, s)
		}
	}
	slices.Sort(early)
	for _, s := range early {
		r.relayHeld(o, o.held[s])
		delete(o.held, s)
	}
	o.next = seq
}

// tick expires what waited too long, with no other message to trigger it.
func (r *receiver) tick(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for origin, o := range r.origins {
		r.expire(origin, o, now)
		r.forget(origin, o)
	}
}
