package cport

import (
	"sync"
	"sync/atomic"
	"time"
)

// flushGate holds back an engine's writes while a worker runs, so that they
// go out together when its batch is over: a worker that relays a batch of
// messages to a thousand connections queues them all, and each connection
// is then written once, with every message of the batch, instead of once
// per message. The worker's next Wait starts the writes (backend.submit);
// a timer starts them should it not come within the gate's delay (the
// worker blocks in user code, or the sender is another goroutine while a
// worker runs). With no worker running, nothing is held.
//
// An engine calls hold from its flush, submitted from its submit, and
// gives the gate a kick function that starts every deferred write. The
// fields set by init are read-only afterwards (tests set delay before the
// first write); the counters are atomic; mu orders the timer's callback
// against stop, so that kick never runs after stop returned.
type flushGate struct {
	q     *queue
	delay time.Duration
	kick  func() // starts the deferred writes; called from the timer's goroutine
	more  func() bool
	timer *time.Timer

	armed   atomic.Bool   // timer set, its callback not yet begun
	epoch   atomic.Uint64 // submits when the timer was set
	submits atomic.Uint64 // submitted calls

	mu      sync.Mutex // guards stopped; held by the callback while it kicks
	stopped bool
}

// init readies g. kick starts every deferred write; more reports whether
// deferred writes wait, for a timer that fires after a submit.
func (g *flushGate) init(q *queue, delay time.Duration, kick func(), more func() bool) {
	g.q, g.delay, g.kick, g.more = q, delay, kick, more
	g.timer = time.AfterFunc(time.Hour, g.fired)
	g.timer.Stop()
}

// hold reports whether a write should wait for a worker's submit, and if
// so makes sure the timer watches over it. It reports false when no worker
// runs: the caller starts the write itself.
func (g *flushGate) hold() bool {
	if g.q.running.Load() == 0 {
		return false
	}
	g.arm()
	return true
}

// arm sets the timer unless it is set.
func (g *flushGate) arm() {
	if g.armed.CompareAndSwap(false, true) {
		g.epoch.Store(g.submits.Load())
		g.timer.Reset(g.delay)
	}
}

// submitted counts a submit: the timer set before it need not kick.
func (g *flushGate) submitted() { g.submits.Add(1) }

// fired kicks the writes deferred by a worker that has not reached its
// submit, unless workers have submitted since the timer was set: each
// submit starts every deferred write there is, so the timer only watches
// on while writes wait.
func (g *flushGate) fired() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	epoch := g.epoch.Load()
	g.armed.Store(false)
	switch {
	case g.submits.Load() == epoch:
		g.kick()
	case g.more():
		g.arm()
	}
}

// stop ends the gate: once it returns, kick is not called again.
func (g *flushGate) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.timer.Stop()
}
