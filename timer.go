package cport

import (
	"errors"
	"math"
	"sync"
	"time"
)

// A Timer is a one-shot timer of a port (Port.Timer): when it expires, a
// completion of op OpTimer carrying its key and tag is queued on the port,
// as if posted with Port.Post.
type Timer struct {
	e        timerEntry
	p        *Port
	key, tag uint64
}

// Timer starts a timer that queues a completion of op OpTimer, carrying
// key and tag, once d has passed: the model's CreateTimerQueueTimer whose
// callback calls PostQueuedCompletionStatus, without a thread or runtime
// timer per timer. Every timer of the port, and every deadline of its
// connections, waits in one heap, which one runtime timer drives. On a
// port with Config.Handler the handler runs the completion on that
// runtime timer's goroutine, as it runs Post's on its caller's.
//
// A zero d expires as soon as the port's timer goroutine runs. A negative
// d is an error, and so is a closed port (ErrClosed). Timers stay pending
// until they expire or are stopped; Port.Close ends them, and none
// completes after Close.
func (p *Port) Timer(d time.Duration, key, tag uint64) (*Timer, error) {
	if d < 0 {
		return nil, errNegativeTimer
	}
	t := &Timer{p: p, key: key, tag: tag}
	t.e.f = t
	if !p.timers.schedule(&t.e, p.timers.now()+int64(d)) {
		return nil, ErrClosed
	}
	return t, nil
}

var errNegativeTimer = errors.New("cport: Port.Timer with a negative duration")

// Stop stops the timer. It reports whether it stopped it before it
// expired: then no completion of the timer follows; false means the timer
// expired (its completion is queued, or on its way there), was stopped
// already, or its port was closed. Stop may race the expiry from any
// goroutine: exactly one of the two wins.
func (t *Timer) Stop() bool { return t.p.timers.remove(&t.e) }

// expire queues the timer's completion.
func (t *Timer) expire() {
	t.p.q.push(Completion{Op: OpTimer, Key: t.key, Tag: t.tag})
}

// An expirer is what an entry of the timer heap runs when it expires: a
// Timer, a connection's deadline or its graceful close's limit.
type expirer interface{ expire() }

// timerEntry is an entry of a port's timer heap. when and index are
// guarded by timers.mu; f is set before the entry is first scheduled.
type timerEntry struct {
	when  int64  // the port's clock (timers.now) at which it expires
	seq   uint64 // the order of scheduling, for entries of the same when
	index int32  // its place in the heap, while in
	in    bool   // in the heap
	f     expirer
}

// timers is a port's timer heap: a min-heap of entries by expiry, driven
// by one runtime timer (rt), reset to the earliest entry as it changes.
// The runtime timer's function (fire) takes the entries due out of the
// heap, under mu, and runs them unlocked, one firing at a time (fireMu):
// so that they expire in their order even when the runtime timer, reset
// while its function runs, runs it twice at once.
//
// Lock order: Port.mu, then Conn.mu, then timers.mu; nothing is called
// out of timers while mu is held. fireMu is held while the entries due
// expire (which take Conn.mu and push completions; a handler runs them),
// and taken by nothing else.
type timers struct {
	epoch time.Time // the clock's zero: now reads the monotonic clock from there

	mu     sync.Mutex
	heap   []*timerEntry
	seq    uint64
	rt     *time.Timer // made at the first schedule
	armed  int64       // when rt fires; math.MaxInt64 when it does not
	closed bool

	fireMu sync.Mutex
	due    []*timerEntry // fire's, under fireMu: reused
}

func (ts *timers) init() {
	ts.epoch = time.Now()
	ts.armed = math.MaxInt64
}

// now returns the time on the port's clock: nanoseconds since its epoch,
// on the monotonic clock.
func (ts *timers) now() int64 { return int64(time.Since(ts.epoch)) }

// at returns the time t on the port's clock.
func (ts *timers) at(t time.Time) int64 {
	n := time.Now()
	d := t.Sub(n)
	return int64(n.Sub(ts.epoch)) + int64(d)
}

// schedule puts e in the heap to expire at when, or moves it there if it
// is in already. It reports false once the port is closed.
func (ts *timers) schedule(e *timerEntry, when int64) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return false
	}
	ts.seq++
	e.when, e.seq = when, ts.seq
	if e.in {
		ts.fixLocked(int(e.index))
	} else {
		e.in, e.index = true, int32(len(ts.heap))
		ts.heap = append(ts.heap, e)
		ts.up(len(ts.heap) - 1)
	}
	if ts.heap[0] == e && when < ts.armed {
		ts.armLocked(ts.now())
	}
	return true
}

// remove takes e out of the heap; false if it was not in it (expired,
// removed, or never scheduled).
func (ts *timers) remove(e *timerEntry) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if !e.in {
		return false
	}
	ts.removeLocked(int(e.index))
	// The runtime timer stays set: firing early, it finds nothing due and
	// sets itself again.
	return true
}

// close empties the heap for good: no entry expires after it.
func (ts *timers) close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.closed = true
	for _, e := range ts.heap {
		e.in = false
	}
	ts.heap = nil
	if ts.rt != nil {
		ts.rt.Stop()
	}
	ts.armed = math.MaxInt64
}

// fire is the runtime timer's function: it expires the entries due and
// sets the timer to the next one.
func (ts *timers) fire() {
	ts.fireMu.Lock()
	defer ts.fireMu.Unlock()
	ts.mu.Lock()
	now := ts.now()
	due := ts.due[:0]
	for len(ts.heap) > 0 && ts.heap[0].when <= now {
		due = append(due, ts.heap[0])
		ts.removeLocked(0)
	}
	ts.armed = math.MaxInt64
	if len(ts.heap) > 0 {
		ts.armLocked(now)
	}
	ts.mu.Unlock()
	for _, e := range due {
		e.f.expire()
	}
	clear(due)
	ts.due = due[:0]
}

// armLocked sets the runtime timer to the earliest entry's expiry.
func (ts *timers) armLocked(now int64) {
	when := ts.heap[0].when
	d := time.Duration(max(when-now, 0))
	if ts.rt == nil {
		ts.rt = time.AfterFunc(d, ts.fire)
	} else {
		ts.rt.Reset(d)
	}
	ts.armed = when
}

// The heap, by (when, seq).

func (ts *timers) less(i, j int) bool {
	a, b := ts.heap[i], ts.heap[j]
	return a.when < b.when || a.when == b.when && a.seq < b.seq
}

func (ts *timers) swap(i, j int) {
	h := ts.heap
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = int32(i), int32(j)
}

func (ts *timers) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !ts.less(i, parent) {
			return
		}
		ts.swap(i, parent)
		i = parent
	}
}

func (ts *timers) down(i int) bool {
	start, n := i, len(ts.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && ts.less(r, l) {
			m = r
		}
		if !ts.less(m, i) {
			break
		}
		ts.swap(i, m)
		i = m
	}
	return i > start
}

func (ts *timers) fixLocked(i int) {
	if !ts.down(i) {
		ts.up(i)
	}
}

func (ts *timers) removeLocked(i int) {
	last := len(ts.heap) - 1
	e := ts.heap[i]
	if i != last {
		ts.swap(i, last)
	}
	ts.heap[last] = nil
	ts.heap = ts.heap[:last]
	if i != last {
		ts.fixLocked(i)
	}
	e.in = false
}
