package chat

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The limits of abuse: connections per source address and accepts per
// second (checked at accept), and the deadlines of a message to arrive
// and of a queue to be taken (checked by the sweeper).

// Errors a session is killed with, as detail of its disconnect.
var (
	errMessageTimeout = errors.New("message timeout")
	errWriteTimeout   = errors.New("write timeout")
)

// admission applies Config.MaxConnsPerIP and Config.AcceptRate to the
// connections accepted. Its methods are O(1); mu is a lock of its own,
// taken with no other chat lock held.
type admission struct {
	perIPMax int     // MaxConnsPerIP; 0: no cap
	rate     float64 // AcceptRate, tokens a second; 0: no cap
	burst    float64 // AcceptBurst, the tokens at most

	mu     sync.Mutex
	perIP  map[netip.Addr]int32 // connections held by address, those with some only
	peak   int                  // most addresses in perIP since it was made
	tokens float64              // as of last
	last   time.Time
}

// A verdict is what admit decides.
type verdict uint8

const (
	admitted verdict = iota
	overPerIP
	overRate
)

// shrinkPeak is how many addresses perIP must have held for it to be made
// anew once empty: a map keeps the room of its peak.
const shrinkPeak = 1024

func newAdmission(cfg Config, now time.Time) *admission {
	return &admission{
		perIPMax: cfg.MaxConnsPerIP,
		rate:     cfg.AcceptRate,
		burst:    float64(cfg.AcceptBurst),
		perIP:    make(map[netip.Addr]int32),
		tokens:   float64(cfg.AcceptBurst),
		last:     now,
	}
}

// on reports whether there is any limit to apply.
func (a *admission) on() bool { return a.perIPMax > 0 || a.rate > 0 }

// admit decides whether a connection from ip, accepted at now, may stay;
// if so, it counts it among the connections of ip (when there is a cap
// per address and ip is valid), for leave to uncount. A connection over
// the cap of its address takes no token of the rate.
func (a *admission) admit(ip netip.Addr, now time.Time) verdict {
	perIP := a.perIPMax > 0 && ip.IsValid()
	a.mu.Lock()
	defer a.mu.Unlock()
	if perIP && int(a.perIP[ip]) >= a.perIPMax {
		return overPerIP
	}
	if a.rate > 0 {
		if d := now.Sub(a.last); d > 0 {
			a.tokens = min(a.burst, a.tokens+a.rate*d.Seconds())
			a.last = now
		}
		if a.tokens < 1 {
			return overRate
		}
		a.tokens--
	}
	if perIP {
		a.perIP[ip]++
		a.peak = max(a.peak, len(a.perIP))
	}
	return admitted
}

// leave uncounts a connection of ip that admit counted.
func (a *admission) leave(ip netip.Addr) {
	if a.perIPMax <= 0 || !ip.IsValid() {
		return
	}
	a.mu.Lock()
	if n := a.perIP[ip] - 1; n > 0 {
		a.perIP[ip] = n
	} else {
		delete(a.perIP, ip)
		if len(a.perIP) == 0 && a.peak >= shrinkPeak {
			a.perIP, a.peak = make(map[netip.Addr]int32), 0
		}
	}
	a.mu.Unlock()
}

// leave uncounts the connection of ss, if admit counted it under its
// source address.
func (s *Server) leave(ss *session) {
	if ss.perIP {
		s.limits.leave(ipOf(ss.conn.RemoteAddr()))
	}
}

// ipOf returns the IP address of a, an IPv4-mapped IPv6 address as its
// IPv4 address, without zone; the zero Addr if a has none.
func ipOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.Addr{}
	}
	return ta.AddrPort().Addr().Unmap().WithZone("")
}

// admit applies MaxConnsPerIP and AcceptRate to the connection of ss,
// just accepted. It resets one past them (counted and logged) and returns
// false; else ss keeps the address it is counted under, for release.
func (s *Server) admit(ss *session) bool {
	if !s.limits.on() {
		return true
	}
	ip := ipOf(ss.conn.RemoteAddr())
	switch s.limits.admit(ip, time.Now()) {
	case admitted:
		ss.perIP = s.cfg.MaxConnsPerIP > 0
		return true
	case overPerIP:
		s.stats.refusedPerIP.Add(1)
		s.events.add(evRefusedPerIP, addrString(ss.conn.RemoteAddr()))
	case overRate:
		s.stats.refusedRate.Add(1)
		s.events.add(evRefusedRate, addrString(ss.conn.RemoteAddr()))
	}
	s.stats.refused.Add(1)
	ss.conn.Abort()
	return false
}

// clock is the time of the server's monotonic clock, in nanoseconds since
// New: above zero, so that zero can mean none.
func (s *Server) clock() int64 { return int64(time.Since(s.epoch)) + 1 }

// carried records, after the n bytes of a receive were fed to the
// splitter of ss, when the message left incomplete (if any) started, for
// MessageTimeout. It is called by the worker holding the receive, which
// owns ss.carried. A message started in this read if none was carried
// before, or if one was and this read completed it: then not all of it
// was added to the carried message.
func (s *Server) carried(ss *session, n int) {
	if s.cfg.MessageTimeout <= 0 {
		return
	}
	p := ss.split.pending()
	begun := ss.carried == 0 || p != int(ss.carried)+n
	if ss.web { // its decoder holds what is incomplete
		d := &ss.ext.ws.dec
		p, begun = d.pending(), ss.carried == 0 || d.started
	}
	switch {
	case p == 0:
		if ss.carried > 0 {
			ss.msgStart.Store(0)
		}
	case begun:
		ss.msgStart.Store(s.clock())
	}
	ss.carried = int32(p)
}

// sweepEvery returns how often the sweeper runs: a quarter of the smallest
// of IdleTimeout, MessageTimeout and WriteTimeout that is on, within
// [10ms, 1s]; 0 if none is.
func (s *Server) sweepEvery() time.Duration {
	least := time.Duration(0)
	for _, d := range []time.Duration{s.cfg.IdleTimeout, s.cfg.MessageTimeout, s.cfg.WriteTimeout} {
		if d > 0 && (least == 0 || d < least) {
			least = d
		}
	}
	if least == 0 {
		return 0
	}
	return max(min(least/4, time.Second), 10*time.Millisecond)
}

// sweep enforces the timeouts every sweepEvery: a client goes between its
// timeout and that much later.
func (s *Server) sweep(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			idleCutoff := time.Now().Add(-s.cfg.IdleTimeout).UnixNano()
			now := s.clock()
			s.hub.each(func(ss *session) {
				if ss.why.Load() == nil {
					s.check(ss, now, idleCutoff)
				}
			})
		}
	}
}

// check kills ss if it is past a timeout: now is the server's clock,
// idleCutoff the wall time (unix nanoseconds) before which an idle client
// has been silent too long. Only the sweeper calls it (it owns the
// session's written and stalled).
func (s *Server) check(ss *session, now, idleCutoff int64) {
	// A half-closed client sends nothing more: it has a timer of its own.
	open := ss.state.Load() == stateOpen
	if open && s.cfg.IdleTimeout > 0 && ss.lastRecv.Load() < idleCutoff {
		ss.kill(reasonIdle, nil)
		return
	}
	if t := s.cfg.MessageTimeout; open && t > 0 {
		if start := ss.msgStart.Load(); start != 0 && now-start >= int64(t) {
			ss.kill(reasonBadInput, fmt.Errorf("%w: a message begun %v ago is still incomplete (MessageTimeout %v)",
				errMessageTimeout, time.Duration(now-start).Round(time.Millisecond), t))
			return
		}
	}
	if t := s.cfg.WriteTimeout; t > 0 {
		// stalled is the first sweep since the last write completed that
		// found bytes queued: as long as no write completes, the client
		// has taken none of them since (none leave the queue unwritten).
		q, w := ss.queued(), uint32(ss.conn.Written())
		switch {
		case q == 0:
			ss.written, ss.stalled = w, 0
		case w != ss.written || ss.stalled == 0:
			ss.written, ss.stalled = w, now
		case now-ss.stalled >= int64(t):
			ss.kill(reasonSlowConsumer, fmt.Errorf("%w: %d bytes queued, none taken for %v (WriteTimeout %v)",
				errWriteTimeout, q, time.Duration(now-ss.stalled).Round(time.Millisecond), t))
		}
	}
}
