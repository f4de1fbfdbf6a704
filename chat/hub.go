package chat

import (
	"sync"

	"cport.dev/cport"
)

// hub is the client registry and the fan-out.
//
// The registry is a dense slice for iteration, guarded by mu; a
// completion finds its session as its connection's value
// (cport.Conn.SetValue), with no lookup here. A relay holds mu for reading
// while it
// queues one shared message on every session: queuing never writes to a
// socket (the port's engine does that), so a slow client cannot stall the
// relay, and no message is copied per receiver. Joins and leaves take mu for
// writing, in O(1).
//
// Lock order: hub.mu, then tlsSide.mu (a TLS client's queue), then the
// cport locks inside Conn.SendQuiet, Conn.Close and Conn.Abort.
type hub struct {
	mu       sync.RWMutex
	sessions []*session // every registered session; s.idx is its index
}

func newHub() *hub { return &hub{} }

// add registers s, or reports false when the hub already holds max
// sessions (max 0: no cap).
func (h *hub) add(s *session, max int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if max > 0 && len(h.sessions) >= max {
		return false
	}
	s.idx = int32(len(h.sessions))
	h.sessions = append(h.sessions, s)
	return true
}

// remove unregisters s; removing twice, or a session never added, is
// harmless.
func (h *hub) remove(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.idx < 0 || int(s.idx) >= len(h.sessions) || h.sessions[s.idx] != s {
		return
	}
	last := h.sessions[len(h.sessions)-1]
	h.sessions[s.idx] = last
	last.idx = s.idx
	h.sessions[len(h.sessions)-1] = nil
	h.sessions = h.sessions[:len(h.sessions)-1]
	s.idx = -1
}

// An outgoing message is what one relay queues, in the encodings its
// receivers need: tcp, in the server's framing, for TCP clients; ws, as
// WebSocket frames, for WebSocket clients, encoded from src (whole
// messages in framing srcF) at the first WebSocket client met, once for
// all of them. The relaying goroutine owns it.
type outgoing struct {
	tcp  *cport.Msg
	src  []byte
	srcF Framing
	ws   *cport.Msg // nil until needed; the relaying goroutine's reference
	wsN  int        // the WebSocket clients ws was queued on
}

// forWS returns o as WebSocket frames, encoding it at the first call.
func (o *outgoing) forWS() *cport.Msg {
	if o.ws == nil {
		o.ws = cport.NewMsg(wsEncodedLen(o.srcF, o.src))
		appendWSMessages(o.ws.Bytes()[:0], o.srcF, o.src)
	}
	return o.ws
}

// bytesOut returns the bytes o queued on n clients, wsN of them
// WebSocket clients.
func (o *outgoing) bytesOut(n int) int64 {
	b := int64(n-o.wsN) * int64(o.tcp.Len())
	if o.ws != nil {
		b += int64(o.wsN) * int64(o.ws.Len())
	}
	return b
}

// release drops the relaying goroutine's reference of the WebSocket
// encoding, if it was made; the caller releases tcp.
func (o *outgoing) release() {
	if o.ws != nil {
		o.ws.Release()
		o.ws = nil
	}
}

// relay queues o on every session but skip (nil: none), half-closed ones
// included, disconnecting those whose send queue would pass limit. It
// returns how many sessions o was queued on, and the longest queue it
// found (before o). A sample tag (not 0) sends o with a completion of that
// tag to one plain session, the first from an index the tag's low bits
// (the clock's) pick, so that no client is the only one sampled (see
// latency.go).
func (h *hub) relay(o *outgoing, skip *session, limit int, sample uint64) (n, longest int) {
	h.mu.RLock()
	from := 0
	if sample != 0 && len(h.sessions) > 0 {
		from = int(uint32(sample) % uint32(len(h.sessions)))
	}
	for i, s := range h.sessions {
		if s == skip {
			continue
		}
		m := o.tcp
		if s.web {
			m = o.forWS()
		} else if m.Len() == 0 {
			continue // an empty WebSocket message, in Raw framing: no bytes
		}
		q := s.queued()
		longest = max(longest, q)
		if q+m.Len() > limit {
			s.kill(reasonSlowConsumer, nil)
			continue
		}
		var err error
		if sample != 0 && i >= from && !s.secure {
			err = s.conn.Send(m, sample)
			sample = 0
		} else {
			err = s.send(m)
		}
		if err == nil {
			n++
			if s.web {
				o.wsN++
			}
		} else {
			// Closed, or broken by a failed write: an open session's
			// receive ends with the failure, a half-closed one has
			// none left, and its client is gone.
			s.expire()
		}
	}
	h.mu.RUnlock()
	return n, longest
}

// each calls f for every session, holding mu for reading.
func (h *hub) each(f func(*session)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range h.sessions {
		f(s)
	}
}
