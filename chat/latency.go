package chat

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Delivery latency inside the server (Stats.Latency): the time from the
// moment a worker relays a message it received to the moment one client's
// copy of it was written to the socket (the time its receive completion
// waited in the port's queue is not counted). It is sampled, so that the relay
// stays as it is: about one relayed run in latencyEvery sends one of its
// deliveries, to a plain client picked by the clock (hub.relay), with Conn.Send
// rather than SendQuiet. That send's completion, tagged with the receive
// time, reaches a worker once the kernel took the message, and the worker
// counts the time in latencyBounds' buckets.

// latencyEvery is how many relayed runs there are per sample, on average.
const latencyEvery = 64

// tagLatency marks a sampled send: the rest of its tag is the clock (see
// Server.clock) of the receive.
const tagLatency uint64 = 1 << 63

// LatencyBounds are the upper bounds of Stats.Latency's buckets.
var LatencyBounds = []time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// Latency is the sampled delivery latency: Counts[i] deliveries took at
// most LatencyBounds[i] (cumulative, as Prometheus' buckets), Count in
// all (those above the last bound too), Sum their total.
type Latency struct {
	Counts []int64
	Count  int64
	Sum    time.Duration
}

// latencyHist counts the samples; observers are workers, rarely.
type latencyHist struct {
	buckets [16]atomic.Int64 // by LatencyBounds, then the rest
	sum     atomic.Int64
}

// observe counts one delivery that took d.
func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// snapshot returns the counts so far.
func (h *latencyHist) snapshot() Latency {
	l := Latency{Counts: make([]int64, len(LatencyBounds)), Sum: time.Duration(h.sum.Load())}
	for i := range LatencyBounds {
		l.Count += h.buckets[i].Load()
		l.Counts[i] = l.Count
	}
	l.Count += h.buckets[len(LatencyBounds)].Load()
	return l
}

// sampleTag returns the tag of a sampled send of a run relayed now, or 0
// for a run not sampled (most: they read no clock).
func (s *Server) sampleTag() uint64 {
	if rand.Uint32N(latencyEvery) != 0 {
		return 0
	}
	return tagLatency | uint64(s.clock())
}

// sent counts a sampled send's completion.
func (s *Server) sent(tag uint64, err error) {
	if tag&tagLatency == 0 || err != nil {
		return
	}
	s.latency.observe(time.Duration(s.clock() - int64(tag&^tagLatency)))
}
