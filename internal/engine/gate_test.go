package engine

import (
	"sync/atomic"
	"testing"
	"time"
)

// fakePort is a Port whose running workers the test sets.
type fakePort struct {
	running atomic.Int32
	inline  bool
}

func (p *fakePort) Running() int { return int(p.running.Load()) }
func (p *fakePort) Inline() bool { return p.inline }
func (p *fakePort) Closed() bool { return false }

// newGate returns a gate of a fake port, its kicks counted and sent on a
// channel, and more answering *waiting.
func newGate(t *testing.T, delay time.Duration) (*FlushGate, *fakePort, chan struct{}, *atomic.Bool) {
	t.Helper()
	port := &fakePort{}
	kicks := make(chan struct{}, 16)
	waiting := &atomic.Bool{}
	g := &FlushGate{}
	g.Init(port, delay, func() { kicks <- struct{}{} }, waiting.Load)
	t.Cleanup(g.Stop)
	return g, port, kicks, waiting
}

func TestGateHoldsOnlyWhileAWorkerRuns(t *testing.T) {
	g, port, _, _ := newGate(t, time.Hour)
	if g.Hold() {
		t.Error("Hold with no worker running; want the caller to write at once")
	}
	port.running.Store(1)
	if !g.Hold() {
		t.Error("no Hold with a worker running")
	}
}

// TestGateInlineHoldsWithoutTimer: on an inline port (a handler's), a
// write waits for the Submit that follows the handler at once, and the
// timer is not set: it would fire once per request at low load.
func TestGateInlineHoldsWithoutTimer(t *testing.T) {
	port := &fakePort{inline: true}
	g := &FlushGate{}
	g.Init(port, time.Millisecond, func() { t.Error("an inline port's gate kicked") }, func() bool { return true })
	t.Cleanup(g.Stop)
	if g.Hold() {
		t.Error("Hold with no handler running")
	}
	port.running.Store(1)
	if !g.Hold() {
		t.Error("no Hold while a handler runs")
	}
	if g.armed.Load() {
		t.Error("the timer was set for an inline port")
	}
}

func TestGateNegativeDelayHoldsNothing(t *testing.T) {
	g, port, _, _ := newGate(t, -1)
	port.running.Store(1)
	if g.Hold() {
		t.Error("Hold with a negative delay")
	}
}

func TestGateDefaultDelay(t *testing.T) {
	g, _, _, _ := newGate(t, 0)
	if g.delay != DefaultFlushDelay {
		t.Errorf("delay %v; want DefaultFlushDelay", g.delay)
	}
}

// TestGateTimerKicks: a worker that never submits still gets its writes
// started, by the timer.
func TestGateTimerKicks(t *testing.T) {
	g, port, kicks, _ := newGate(t, time.Millisecond)
	port.running.Store(1)
	g.Hold()
	select {
	case <-kicks:
	case <-time.After(time.Minute):
		t.Fatal("the timer never kicked the held writes")
	}
}

// TestGateSubmitSupersedesTimer: once a worker submitted, the timer set
// before does not kick; it watches on only while writes wait.
func TestGateSubmitSupersedesTimer(t *testing.T) {
	g, port, kicks, waiting := newGate(t, time.Hour)
	port.running.Store(1)
	g.Hold()
	g.Submitted()
	g.fired() // as the timer would
	if len(kicks) != 0 {
		t.Fatal("kicked after a submit")
	}
	if g.armed.Load() {
		t.Fatal("re-armed with nothing waiting")
	}
	waiting.Store(true)
	g.Hold()
	g.Submitted()
	g.fired()
	if len(kicks) != 0 || !g.armed.Load() {
		t.Fatalf("kicks %d, armed %v; want no kick and the timer set again while writes wait", len(kicks), g.armed.Load())
	}
	g.fired() // no submit since: kick
	if len(kicks) != 1 {
		t.Fatalf("kicks %d; want 1", len(kicks))
	}
}

func TestGateStopEndsKicks(t *testing.T) {
	g, port, kicks, _ := newGate(t, time.Hour)
	port.running.Store(1)
	g.Hold()
	g.Stop()
	g.fired()
	if len(kicks) != 0 {
		t.Fatal("kicked after Stop")
	}
}

func TestNextAcceptPause(t *testing.T) {
	var d time.Duration
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	for _, w := range want {
		d = NextAcceptPause(d)
		if d != w {
			t.Fatalf("pause %v; want %v", d, w)
		}
	}
	for range 20 {
		d = NextAcceptPause(d)
	}
	if d != time.Second {
		t.Fatalf("pause %v after many; want the 1s cap", d)
	}
}

func TestBufPool(t *testing.T) {
	p := NewBufPool(100)
	b := p.Get()
	if len(b.B) != 100 {
		t.Fatalf("buffer of %d bytes; want 100", len(b.B))
	}
	p.Put(b)
}
