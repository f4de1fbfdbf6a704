package chat

import (
	"sync"
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
}

func newFlow() *flow { return &flow{wake: make(chan struct{}, 1)} }

// A kept is a run of a session's messages relayed to the room, kept
// until it is written everywhere, with what it weighs per client: its
// bytes, and msgWeight per message.
type kept struct {
	m      *cport.Msg
	weight int64
}

// keep takes m, a run of msgs messages of ss's relayed to the room, as
// one of ss's own until it is written everywhere: the caller's reference
// becomes ss's. Called by the worker holding ss's receive.
func (ss *session) keep(m *cport.Msg, msgs int) {
	ss.out = append(ss.out, kept{m, int64(m.Len()) + int64(msgs)*msgWeight})
}

// ahead returns the weight of ss's messages still queued to clients (their
// bytes and msgWeight each), and lets go of those written everywhere (ss's
// is the only reference left). Called by whoever owns ss.out: the worker
// holding ss's receive, or the flow goroutine while ss is paused.
func (ss *session) ahead() int64 {
	var n int64
	k := 0
	for _, o := range ss.out {
		refs := o.m.Refs() - 1 // the sends not yet written
		if refs == 0 {
			o.m.Release()
			continue
		}
		n += int64(refs) * o.weight
		ss.out[k] = o
		k++
	}
	clear(ss.out[k:])
	ss.out = ss.out[:k]
	if k == 0 {
		ss.out = nil // an idle session holds nothing
	}
	return n
}

// dropOut lets go of ss's messages, whatever their state: its receive has
// ended, and nobody measures it any more.
func (ss *session) dropOut() {
	for _, o := range ss.out {
		o.m.Release()
	}
	ss.out = nil
}

// overLimit reports whether ss is further ahead of the room than limit
// bytes per client, among n clients; or, when a client's queue is crowded
// (half way to SendQueue), further than a quarter of that: a reader slower
// than the others then sets the pace of a sender that fills queues, rather
// than being evicted by it. (Senders that wait for replies are far below a
// quarter, and a stalled reader's share of each is a fraction of it: it
// holds up nobody, and goes at SendQueue or WriteTimeout.)
// It sets ss.resumeBelow, where the flow goroutine resumes ss: half of
// what it was over, or an eighth of the limit when a client was crowded,
// so that the reader has room again before the sender goes on.
func overLimit(ss *session, limit int, n int64, crowded bool) bool {
	if ss.out == nil {
		return false
	}
	a, per := ss.ahead(), int64(limit)*max(n-1, 1)
	switch {
	case a > per:
		ss.resumeBelow = per / 2
	case crowded && a > per/4:
		ss.resumeBelow = per / 8
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
	if ss.held == nil {
		ss.held = new(cport.Completion)
	}
	*ss.held = *c
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
		s.flow.mu.Lock()
		keep = keep[:0]
		for _, ss := range s.flow.paused {
			if ss.why.Load() != nil || s.isDraining() ||
				(s.cfg.SenderLimit <= 0 || ss.ahead() <= ss.resumeBelow) && (ss.rate == nil || !now.Before(ss.rate.resumeAt)) {
				s.resume(ss)
				continue
			}
			keep = append(keep, ss)
		}
		s.flow.paused = append(s.flow.paused[:0], keep...)
		clear(keep)
		s.flow.mu.Unlock()
	}
}

// resume releases ss's held completion: the port reads from it again.
func (s *Server) resume(ss *session) {
	c := *ss.held
	*ss.held = cport.Completion{}
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
