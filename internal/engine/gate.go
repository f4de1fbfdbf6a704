package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultFlushDelay is the longest a running worker's writes wait for its
// Submit when Config.FlushDelay is zero.
const DefaultFlushDelay = 500 * time.Microsecond

// FlushGate holds back an engine's writes while a worker runs, so that
// they go out together when its batch is over: a worker that relays a
// batch of messages to a thousand connections queues them all, and each
// connection is then written once, with every message of the batch,
// instead of once per message. The worker's next Wait starts the writes
// (Engine.Submit); a timer starts them should it not come within the
// gate's delay (the worker blocks in user code, or the sender is another
// goroutine while a worker runs). With no worker running, nothing is held.
//
// An engine calls Hold from its Conn.Flush and Submitted from its Submit,
// and gives the gate a kick function that starts every deferred write.
// The fields set by Init are read-only afterwards; the counters are
// atomic; mu orders the timer's callback against Stop, so that kick never
// runs after Stop returned.
type FlushGate struct {
	port   Port
	delay  time.Duration // negative: hold nothing
	inline bool          // port.Inline(): a Submit follows every run at once, no timer needed
	kick   func()        // starts the deferred writes; called from the timer's goroutine
	more   func() bool
	timer  *time.Timer

	armed   atomic.Bool   // timer set, its callback not yet begun
	epoch   atomic.Uint64 // submits when the timer was set
	submits atomic.Uint64 // Submitted calls

	mu      sync.Mutex // guards stopped; held by the callback while it kicks
	stopped bool
}

// Init readies g for an engine of port. delay is Config.FlushDelay (zero:
// DefaultFlushDelay). kick starts every deferred write; more reports
// whether deferred writes wait, for a timer that fires after a Submit.
func (g *FlushGate) Init(port Port, delay time.Duration, kick func(), more func() bool) {
	if delay == 0 {
		delay = DefaultFlushDelay
	}
	g.port, g.delay, g.kick, g.more = port, delay, kick, more
	g.inline = port.Inline()
	g.timer = time.AfterFunc(time.Hour, g.fired)
	g.timer.Stop()
}

// Hold reports whether a write should wait for a worker's Submit, and if
// so makes sure the timer watches over it (not on an inline port, whose
// every run is followed by a Submit at once: the write waits no longer
// than a handler runs). It reports false when no worker runs: the caller
// starts the write itself. The caller must have queued the write where
// Submit finds it before it calls Hold: a Submit that follows a run which
// Hold saw must find it.
func (g *FlushGate) Hold() bool {
	if g.delay < 0 || g.port.Running() == 0 {
		return false
	}
	if g.inline {
		return true
	}
	g.arm()
	return true
}

// arm sets the timer unless it is set.
func (g *FlushGate) arm() {
	if g.armed.CompareAndSwap(false, true) {
		g.epoch.Store(g.submits.Load())
		g.timer.Reset(g.delay)
	}
}

// Submitted counts a Submit: the timer set before it need not kick.
func (g *FlushGate) Submitted() { g.submits.Add(1) }

// fired kicks the writes deferred by a worker that has not reached its
// Submit, unless workers have submitted since the timer was set: each
// Submit starts every deferred write there is, so the timer only watches
// on while writes wait.
func (g *FlushGate) fired() {
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

// Stop ends the gate: once it returns, kick is not called again.
func (g *FlushGate) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.timer.Stop()
}
