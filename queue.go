package cport

import (
	"sync"
	"sync/atomic"
)

// queue is the completion queue with its concurrency cap: the heart of the
// port. The engines' reports become completions pushed here, from any
// goroutine; workers pop them.
//
// All fields are guarded by mu, but for handler and submit, set before the
// port opens its engine and read-only afterwards, and the atomics: running
// is also read without mu (by the engines' FlushGate, through
// engine.Port.Running), shut is closed's copy for handlers. Lock order:
// Conn.mu, then queue.mu; nothing is called out of the queue while mu is
// held (dropped completions are released after unlocking). Completions are
// pushed with no lock of the port's held: a handler may call back into
// the port.
type queue struct {
	handler func(Completion) // Config.Handler: completions run at once, never queued
	submit  func()           // the engine's Submit, after each handler's run
	shut    atomic.Bool      // closed, for handlers (set under mu)

	mu      sync.Mutex
	ring    []Completion // circular; len is a power of two
	head    int          // index of the oldest completion
	n       int          // completions queued
	running atomic.Int32 // workers between a Wait that returned and their next Wait; written under mu, read anywhere
	limit   int          // Config.Concurrency
	waiters []*Worker    // blocked in Wait, most recent last (woken first, as IOCP does: its cache is warm)
	closed  bool
}

// The ring's sizes: it starts at minRing, doubles as needed, and shrinks
// back once empty if it grew past maxIdleRing.
const (
	minRing     = 64
	maxIdleRing = 4096
)

func (q *queue) init(limit int) {
	q.limit = limit
	q.ring = make([]Completion, minRing)
}

// push queues c and wakes a waiter if one may run; with a handler, it runs
// c instead. It reports false, having released c, when the queue is
// closed.
func (q *queue) push(c Completion) bool {
	if q.handler != nil {
		return q.run(c)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		c.Release()
		return false
	}
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = c
	q.n++
	q.wakeLocked()
	q.mu.Unlock()
	return true
}

// run hands c to the handler on the calling goroutine. The handler counts
// as a running worker, so that the sends it starts wait for the submit
// that follows it and go out together (engine.FlushGate); a handler's
// reply on the epoll engine is then written by this goroutine, and on
// uring submitted by the ring's loop that ran the handler, in its next
// io_uring_enter.
func (q *queue) run(c Completion) bool {
	if q.shut.Load() {
		c.Release()
		return false
	}
	q.running.Add(1)
	q.handler(c)
	q.running.Add(-1)
	q.submit()
	return true
}

func (q *queue) grow() {
	ring := make([]Completion, 2*len(q.ring))
	k := copy(ring, q.ring[q.head:])
	copy(ring[k:], q.ring[:q.head])
	q.ring, q.head = ring, 0
}

// wakeLocked wakes the most recent waiter if a completion is queued and the
// cap allows one more running worker.
func (q *queue) wakeLocked() {
	if q.n == 0 || int(q.running.Load()) >= q.limit || len(q.waiters) == 0 {
		return
	}
	w := q.waiters[len(q.waiters)-1]
	q.waiters = q.waiters[:len(q.waiters)-1]
	w.signal()
}

// popLocked moves up to len(dst) completions into dst.
func (q *queue) popLocked(dst []Completion) int {
	k := min(len(dst), q.n)
	mask := len(q.ring) - 1
	for i := range k {
		j := (q.head + i) & mask
		dst[i] = q.ring[j]
		q.ring[j] = Completion{} // drop references for the collector
	}
	q.head = (q.head + k) & mask
	q.n -= k
	if q.n == 0 && len(q.ring) > maxIdleRing {
		// A burst is over: let go of the memory it took.
		q.ring, q.head = make([]Completion, minRing), 0
	}
	return k
}

// removeWaiterLocked takes w off the waiter list, if it is there.
func (q *queue) removeWaiterLocked(w *Worker) bool {
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// close wakes every waiter and releases every queued completion; later
// pushes are released at once.
func (q *queue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.shut.Store(true)
	for _, w := range q.waiters {
		w.signal()
	}
	q.waiters = nil
	dropped := make([]Completion, q.n)
	q.popLocked(dropped)
	q.mu.Unlock()
	for i := range dropped {
		dropped[i].Release()
	}
}
