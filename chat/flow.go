package chat

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport"
)

// Flow control of senders (Config.SenderLimit).
//
// A client's messages are queued to every client; a client that sends
// faster than the room reads would fill everyone's send queue, and the
// readers, not the sender, would be disconnected as slow consumers. So
// each session keeps its own messages until they are written everywhere
// (session.out), and after each of its receives the server measures how
// far ahead of the room it is: the bytes of its messages still queued, per
// client. Past SenderLimit the session is paused: its receive completion
// is held, not released, so the port stops reading from the connection
// (cport delivers one receive completion of a connection at a time), and
// TCP's flow control then slows the sender itself. The flow goroutine
// polls the paused sessions and releases the held completion once the room
// has taken half of what was over: the sender goes on at the pace of the
// room.
//
// A reader that stalled holds its senders up until Config.WriteTimeout
// disconnects it; one that reads slowly sets the pace of the room.
//
// Config.MessageRate caps each client's messages per second the same way:
// a client past its budget is paused until the budget has refilled.

// msgWeight is what each message counts for in SenderLimit on top of its
// bytes: a reader pays for every message, whatever its size, and a flood
// of empty messages is paced like one of msgWeight-byte messages.
const msgWeight = 64

// flowPoll is how often the paused senders are looked at: a paused sender
// waits at most that long after the room has caught up.
const flowPoll = time.Millisecond

// A flow holds the paused sessions, for the goroutine that resumes them.
// mu is taken with no other chat lock held; under it the flow goroutine
// takes Server.relaying for reading, and cport's locks in
// Completion.Release.
type flow struct {
	mu     sync.Mutex
	paused []*session    // guarded by mu
	wake   chan struct{} // a session was paused: the goroutine polls

	// The sessions that relayed in each of the last two periods of
	// contendPeriod (period: the current one's number), by its parity.
	period  atomic.Int64
	senders [2]atomic.Int32
}

// contendPeriod is how recently another client must have sent for a
// sender's number of messages to count (Config.SenderMessages).
const contendPeriod = 100 * time.Millisecond

// contended counts ss among this period's senders (now is Server.clock)
// and reports whether another client sent in this period or the last: the
// room is then contended. Its messages wait behind a flooder's, in
// cport's queues and in the kernel's socket buffers, which the server
// cannot see; so a sender's number of messages queued counts only then.
// Called by the worker holding ss's receive, which owns ss.period.
func (f *flow) contended(ss *session, now int64) bool {
	p := now / int64(contendPeriod)
	if cur := f.period.Load(); p != cur && f.period.CompareAndSwap(cur, p) {
		f.senders[p&1].Store(0)
		if p != cur+1 {
			f.senders[(p-1)&1].Store(0) // idle for a period or more
		}
	}
	if ss.period != uint32(p+1) {
		ss.period = uint32(p + 1) // 0: none yet
		f.senders[p&1].Add(1)
	}
	// Each session counts once per period: two are another client.
	return f.senders[p&1].Load() >= 2 || f.senders[(p-1)&1].Load() >= 2
}

func newFlow() *flow { return &flow{wake: make(chan struct{}, 1)} }

// A kept is a run of a session's messages relayed to the room, kept
// until it is written everywhere. It weighs its bytes and msgWeight per
// message, per client it is still queued to.
type kept struct {
	m    *cport.Msg
	msgs int64 // messages in m
}

// keep takes m, a run of msgs messages of ss's relayed to the room, as
// one of ss's own until it is written everywhere: the caller's reference
// becomes ss's. It returns the run's weight per client. Called by the
// worker holding ss's receive.
func (ss *session) keep(m *cport.Msg, msgs int) int64 {
	ss.flow.out = append(ss.flow.out, kept{m, int64(msgs)})
	return int64(m.Len()) + int64(msgs)*msgWeight
}

// minority is the share of the room (one client in minority) whose queues
// alone hold up no sender: a message still queued to that few clients, out
// of room, is not counted in ahead. A few stalled readers are then
// evicted (SendQueue, WriteTimeout) while the others go on at full pace.
const minority = 10

// ahead returns the weight of ss's messages still queued to clients (their
// bytes and msgWeight each) among room clients, and how many they are, each
// counted once per client it is queued to, those queued to a minority of
// the room left out; it lets go of those written everywhere (ss's is the
// only reference left). Called by whoever owns ss.flow: the worker holding
// ss's receive, or the flow goroutine while ss is paused.
func (ss *session) ahead(room int64) (weight, msgs int64) {
	f := ss.flow
	if f == nil {
		return 0, 0 // it never sent under a limit
	}
	k := 0
	for _, o := range f.out {
		refs := o.m.Refs() - 1 // the sends not yet written
		if refs == 0 {
			o.m.Release()
			continue
		}
		if r := int64(refs); r*minority > room {
			weight += r * (int64(o.m.Len()) + o.msgs*msgWeight)
			msgs += r * o.msgs
		}
		f.out[k] = o
		k++
	}
	clear(f.out[k:])
	f.out = f.out[:k]
	if k == 0 {
		f.out = nil // an idle session holds nothing
	}
	return weight, msgs
}

// dropOut lets go of ss's messages, whatever their state: its receive has
// ended, and nobody measures it any more.
func (ss *session) dropOut() {
	if ss.flow == nil {
		return
	}
	for _, o := range ss.flow.out {
		o.m.Release()
	}
	ss.flow.out = nil
}

// A budget is how far a sender may get ahead of a room: per, the weight of
// its messages still queued (Config.SenderLimit times the other clients),
// and perMsgs, their number (Config.SenderMessages times the others).
type budget struct{ per, perMsgs int64 }

// budget returns the senders' budget in a room of room clients: no limit
// where the Config sets none.
func (s *Server) budget(room int64) budget {
	b := budget{math.MaxInt64, math.MaxInt64}
	others := max(room-1, 1)
	if s.cfg.SenderLimit > 0 {
		b.per = int64(s.cfg.SenderLimit) * others
	}
	if s.cfg.SenderMessages > 0 {
		b.perMsgs = int64(s.cfg.SenderMessages) * others
	}
	return b
}

// over reports whether a sender with weight and msgs queued is past b; its
// number counts only in a contended room, where others send too (see
// flow.contended): a sender alone is never paused for how many messages
// it sends, only for their weight.
func (b budget) over(weight, msgs int64, contended bool) bool {
	return weight > b.per || contended && msgs > b.perMsgs
}

// overLimit reports whether ss is past b in a room of room clients
// (contended or not: see budget.over); or,
// when a client's queue is crowded (half way to SendQueue), past a quarter
// of b's weight: a reader slower than the others then sets the pace of a
// sender that fills queues, rather than being evicted by it. (Senders that
// wait for replies are far below a quarter.) It sets resumeBelow, the
// weight under which the flow goroutine resumes ss (with half of b's
// messages): half of b's, or an eighth when a client was crowded, so that
// the reader has room again before the sender goes on.
func overLimit(ss *session, b budget, room int64, contended, crowded bool) bool {
	f := ss.flow
	if f == nil || f.out == nil {
		return false
	}
	switch a, k := ss.ahead(room); {
	case b.over(a, k, contended):
		f.resumeBelow, f.byCount = b.per/2, a <= b.per
	case crowded && a > b.per/4:
		f.resumeBelow, f.byCount = b.per/8, false
	default:
		return false
	}
	return true
}

// A rateBudget is a session's budget of Config.MessageRate: the messages
// it may still send at the time at, and, once it is spent, when the
// session paused for it may go on (set before it is paused).
type rateBudget struct {
	tokens   float64
	at       time.Time
	resumeAt time.Time
}

// overRate takes msgs messages from ss's budget (Config.MessageRate), and
// reports whether it is spent: ss then waits until ss.rate.resumeAt.
// Called by the worker holding ss's receive, which owns the budget.
func (s *Server) overRate(ss *session, msgs int) bool {
	rate := s.cfg.MessageRate
	now := time.Now()
	r := ss.rate
	if r == nil {
		r = &rateBudget{tokens: rate} // a full second's budget to start with
		ss.rate = r
	} else {
		r.tokens = min(rate, r.tokens+rate*now.Sub(r.at).Seconds())
	}
	r.at = now
	r.tokens -= float64(msgs)
	if r.tokens >= 0 {
		return false
	}
	r.resumeAt = now.Add(time.Duration(-r.tokens / rate * float64(time.Second)))
	return true
}

// pause holds c, the receive completion of ss just handled, so that the
// port reads no more from ss's connection. The flow goroutine releases c
// once ss may go on.
func (s *Server) pause(ss *session, c *cport.Completion) {
	if ss.flow.held == nil {
		ss.flow.held = new(cport.Completion)
	}
	*ss.flow.held = *c
	s.hold(ss)
}

// hold lists ss among the paused sessions, its receive (or, for a TLS
// client, its reader) held, for the flow goroutine.
func (s *Server) hold(ss *session) {
	s.stats.paused.Add(1)
	s.flow.mu.Lock()
	s.flow.paused = append(s.flow.paused, ss)
	s.flow.mu.Unlock()
	select {
	case s.flow.wake <- struct{}{}:
	default:
	}
}

// runFlow resumes the paused sessions whose messages the room has taken,
// down to half the limit, and those that are ending; at Close, all of them.
func (s *Server) runFlow() {
	tick := time.NewTicker(flowPoll)
	defer tick.Stop()
	var keep []*session
	for {
		s.flow.mu.Lock()
		idle := len(s.flow.paused) == 0
		s.flow.mu.Unlock()
		if idle {
			select {
			case <-s.flow.wake:
			case <-s.stop:
				s.resumeAll()
				return
			}
		}
		select {
		case <-tick.C:
		case <-s.stop:
			s.resumeAll()
			return
		}
		now := time.Now()
		room := s.stats.active.Load()
		b := s.budget(room)
		s.flow.mu.Lock()
		keep = keep[:0]
		for _, ss := range s.flow.paused {
			switch {
			case ss.why.Load() != nil || s.isDraining():
				s.resume(ss)
			case s.mayGo(ss, room, b) && (ss.rate == nil || !now.Before(ss.rate.resumeAt)):
				if !s.proceed(ss) {
					continue
				}
				fallthrough
			default:
				keep = append(keep, ss)
			}
		}
		s.flow.paused = append(s.flow.paused[:0], keep...)
		clear(keep)
		s.flow.mu.Unlock()
	}
}

// mayGo reports whether the room has taken enough of paused ss's messages
// for it to go on: under its resumeBelow, and, if it was paused for their
// number, half of b's.
func (s *Server) mayGo(ss *session, room int64, b budget) bool {
	if s.cfg.SenderLimit <= 0 && s.cfg.SenderMessages <= 0 {
		return true // paused for MessageRate only
	}
	a, k := ss.ahead(room)
	return a <= ss.flow.resumeBelow && (!ss.flow.byCount || k <= b.perMsgs/2)
}

// proceed relays what is left of ss's held receive, if anything, and
// releases it unless ss is too far ahead again. It reports whether ss is
// still paused. Called by the flow goroutine, which owns ss while it is
// paused.
func (s *Server) proceed(ss *session) (paused bool) {
	if from := int(ss.flow.heldAt); from > 0 {
		ss.flow.heldAt = 0
		buf := ss.heldBuf()
		var t tally
		at, pause := s.relayAll(ss, buf, from, &t)
		s.shards[len(s.shards)-1].add(&t)
		if pause {
			ss.flow.heldAt = heldAt(at, buf)
			s.stats.paused.Add(1)
			return true
		}
	}
	s.resume(ss)
	return false
}

// heldBuf returns the bytes of paused ss's held receive.
func (ss *session) heldBuf() []byte {
	switch {
	case ss.secure:
		return ss.ext.tls.held
	case ss.web:
		return ss.ext.ws.dec.out
	}
	return ss.flow.held.Buf
}

// resume releases ss's held completion: the port reads from it again. A
// TLS client's reader is woken instead.
func (s *Server) resume(ss *session) {
	if ss.secure {
		ss.flow.heldAt = 0
		ss.ext.tls.held = nil
		ss.ext.tls.resume <- struct{}{}
		return
	}
	c := *ss.flow.held
	*ss.flow.held = cport.Completion{}
	ss.flow.heldAt = 0
	c.Release()
}

// resumeAll resumes every paused session: the server is closing.
func (s *Server) resumeAll() {
	s.flow.mu.Lock()
	defer s.flow.mu.Unlock()
	for _, ss := range s.flow.paused {
		s.resume(ss)
	}
	s.flow.paused = nil
}

// isDraining reports whether Shutdown has begun: paused senders go on,
// their data dropped.
func (s *Server) isDraining() bool {
	s.relaying.RLock()
	defer s.relaying.RUnlock()
	return s.draining
}
