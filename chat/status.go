package chat

import (
	"errors"
	"fmt"
	"slices"

	"cport.dev/cport"
)

// Read-only views of a running server, for its operators: readiness, the
// engine's counters, the send queues. None of them touches the relay path.

// Errors of Ready.
var (
	ErrNotServing = errors.New("chat: not serving yet")
	ErrEnding     = errors.New("chat: shutting down")
	ErrRelayDown  = errors.New("chat: cluster relay down")
)

// Ready reports whether the server serves: nil once Serve listens, until
// Shutdown or Close begins, while its cluster relay is up (RelayReady);
// otherwise why not: ErrNotServing, ErrEnding or the error of RelayReady.
// It is what a readiness probe asks.
func (s *Server) Ready() error {
	switch {
	case s.ending.Load():
		return ErrEnding
	case !s.serving.Load():
		return ErrNotServing
	}
	return s.RelayReady()
}

// RelayReady reports whether the server's cluster relay (Config.NATS, or
// a Config.Bus with a method Ready() error) is up: nil if it is, or if
// there is none; ErrNotServing before Serve has started it; else an error
// matching ErrRelayDown that says why.
func (s *Server) RelayReady() error {
	b, ok := s.bus.(interface{ Ready() error })
	switch {
	case !ok:
		return nil
	case !s.serving.Load():
		return ErrNotServing
	}
	// serving is set after the bus started: b.Ready may look at it.
	if err := b.Ready(); err != nil {
		return fmt.Errorf("%w: %w", ErrRelayDown, err)
	}
	return nil
}

// Config returns the server's configuration, with the defaults New filled
// in.
func (s *Server) Config() Config { return s.cfg }

// EngineStats returns the counters of the server's cport engine.
func (s *Server) EngineStats() cport.Stats { return s.port.Stats() }

// QueueStats describe the send queues of the clients in the room, at one
// moment.
type QueueStats struct {
	Clients int   // clients in the room, half-closed ones included
	Bytes   int64 // bytes queued to them, not yet written
	Largest int64 // the longest queue, in bytes
	// Counts[i] is how many clients have at most bounds[i] bytes queued,
	// for the bounds given to SendQueues: cumulative, as the buckets of a
	// Prometheus histogram.
	Counts []uint64
}

// SendQueues returns the send queues of the clients in the room, counted
// against bounds (ascending byte counts). It visits every client, holding
// the room's lock for reading as a relay does: call it at most every few
// seconds, not per message.
func (s *Server) SendQueues(bounds []int64) QueueStats {
	qs := QueueStats{Counts: make([]uint64, len(bounds))}
	s.hub.each(func(ss *session) {
		q := int64(ss.queued())
		qs.Clients++
		qs.Bytes += q
		qs.Largest = max(qs.Largest, q)
		if i, _ := slices.BinarySearch(bounds, q); i < len(bounds) {
			qs.Counts[i]++
		}
	})
	for i := 1; i < len(qs.Counts); i++ {
		qs.Counts[i] += qs.Counts[i-1]
	}
	return qs
}
