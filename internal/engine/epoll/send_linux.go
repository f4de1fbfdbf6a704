package epoll

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The epoll engine's sends and their coalescing: see doc.go.

// flush is called when ec's send queue became non-empty with no write in
// flight (Conn.Flush). The write is left to the flushers, so that the
// caller goes on queuing (a fan-out queues on every connection before the
// first is written). While a worker runs, no flusher is even woken: the
// worker's Submit does that once its batch has queued all it will.
func (e *Engine) flush(ec *conn) {
	if !e.fifo.add(ec) {
		return // the flushers have work already: woken, or to be woken as that was
	}
	if e.gate.Hold() {
		return // for the running worker's submit
	}
	e.fifo.wake()
}

// Submit starts the writes deferred by a worker's batch. A few it makes
// itself, sparing a goroutine switch (a reply to a request); more it leaves
// to the flushers, so that the worker goes back to its completions while
// the flushers write (a fan-out), each on its own goroutine.
func (e *Engine) Submit() {
	e.gate.Submitted()
	switch n := e.fifo.n.Load(); {
	case n == 0:
	case n <= submitInline:
		var batch [submitInline]*conn
		k := e.fifo.take(batch[:n])
		s := e.getScratch()
		for _, ec := range batch[:k] {
			e.write(ec, s)
		}
		e.putScratch(s)
	default:
		e.fifo.wake()
	}
}

func (e *Engine) getScratch() *scratch {
	if s, _ := e.scratch.Get().(*scratch); s != nil {
		return s
	}
	return new(scratch)
}

func (e *Engine) putScratch(s *scratch) { e.scratch.Put(s) }

// deferred reports whether writes wait for a submit.
func (e *Engine) deferred() bool { return e.fifo.n.Load() > 0 }

// fifo is the engine's one FIFO of the connections whose write was
// deferred, which its flusher goroutines drain together, a few
// connections at a take. A connection is in it at most once (it holds the
// write token); one written whole that found more queued meanwhile goes
// back to the tail. So every connection with something to send is written
// once per round, whichever flusher takes it, and the messages that queue
// during a round go out together in the next.
//
// One FIFO, not one per poller: the round is the same for every
// connection, so none can fall behind the others. A closed-loop sender
// (a client that sends again when it reads its own echo) is written once
// per round like every other connection, so no connection can get more
// than a round's worth of messages behind it. With a FIFO per flusher, the
// connections of a flusher that has no such sender have no such bound: let
// it get less CPU than the sender's, or write fuller (slower) batches once
// it lags, and its queues grow without limit until the server drops the
// connections as slow consumers (seen with 1000 clients, 2 senders, 64 KiB
// messages; both senders landed on one flusher).
type fifo struct {
	kick chan struct{} // capacity 1: the FIFO has work for one more flusher
	n    atomic.Int32  // len(q) - head, for Submit to look without the lock

	mu   sync.Mutex // guards q and head
	q    []*conn
	head int
}

// flushBatch is how many connections a flusher takes from the FIFO at a
// time: few, so that the others' round goes on past a flusher held up in
// one long write, and so few connections lag behind it (with 32, a
// stalled batch showed in the 90th percentile of TestEpollFanoutRound's
// queues; with 8 it does not). A take is one lock: cheap beside a write.
const flushBatch = 8

// add appends ec to the FIFO and reports whether it was empty.
func (f *fifo) add(ec *conn) bool {
	f.mu.Lock()
	f.q = append(f.q, ec)
	first := f.n.Add(1) == 1
	f.mu.Unlock()
	return first
}

// wake wakes a flusher, unless one is being woken already.
func (f *fifo) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// take moves up to len(dst) connections from the head of the FIFO into
// dst.
func (f *fifo) take(dst []*conn) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := copy(dst, f.q[f.head:])
	clear(f.q[f.head : f.head+k])
	f.head += k
	f.n.Add(int32(-k))
	switch {
	case f.head == len(f.q):
		f.q, f.head = f.q[:0], 0
	case f.head > len(f.q)/2:
		m := copy(f.q, f.q[f.head:])
		clear(f.q[m:])
		f.q, f.head = f.q[:m], 0
	}
	return k
}

// flusher is a flusher goroutine: it drains the FIFO whenever woken, until
// the engine closes.
func (e *Engine) flusher() {
	defer e.wg.Done()
	var s scratch
	for {
		select {
		case <-e.fifo.kick:
		case <-e.done:
			return
		}
		e.drain(&s)
	}
}

// drain writes the FIFO's connections until it is empty. While more is
// left than it took, it wakes another flusher to share the work: each
// takes flushBatch connections at a time.
func (e *Engine) drain(s *scratch) {
	var batch [flushBatch]*conn
	for {
		k := e.fifo.take(batch[:])
		if k == 0 {
			return
		}
		if e.fifo.n.Load() > 0 {
			e.fifo.wake()
		}
		for _, ec := range batch[:k] {
			e.write(ec, s)
		}
		clear(batch[:k])
	}
}

// write runs the write side of ec; the caller holds its write token (the
// owner has a write in progress and nobody else writes it). It returns
// having passed the token on: nothing left to write, parked on EPOLLOUT, or
// back in the pending FIFO. It calls the owner with no lock of the
// engine's held.
func (e *Engine) write(ec *conn, s *scratch) {
	owner := ec.owner
	for {
		ec.mu.Lock()
		if ec.st&ecClosed != 0 {
			ec.mu.Unlock()
			owner.SendDone(0, engine.ErrCanceled)
			return
		}
		ec.st = ec.st&^ecWritable | ecWriting
		ec.mu.Unlock()

		s.iov = owner.SendBatch(s.iov[:0], maxIov)
		var total int
		s.vecs, total = sockopt.AppendIovecs(s.vecs, s.iov)
		var n int
		var err error
		var injected bool
		if len(s.vecs) > 0 {
			n, injected, err = e.writev(ec.fd, s.vecs)
			if !injected {
				e.writes.Add(1)
			}
		}
		if err == unix.EAGAIN {
			n, err = 0, nil
		}
		var shutErr syscall.Errno
		if err != nil {
			// The receive ends with the send's error: on the end of
			// stream the shutdown makes it read, or, if the shutdown
			// fails, on shutErr.
			shutErr = e.shutdown(ec.fd, unix.SHUT_RDWR)
			err = os.NewSyscallError("writev", err)
		}
		clear(s.iov)
		clear(s.vecs)
		s.iov, s.vecs = s.iov[:0], s.vecs[:0]
		more := owner.SendDone(n, err) // before ecWriting goes: see ecEOFWait
		ec.mu.Lock()
		ec.st &^= ecWriting
		if shutErr != 0 {
			ec.shutErr = uint16(shutErr)
		}
		closeFD, reset := ec.releasableLocked()
		reread := ec.st&ecEOFWait != 0
		if reread {
			ec.st = ec.st&^ecEOFWait | ecReadable
		}
		ec.mu.Unlock()
		if closeFD {
			e.closeFD(ec, reset)
		}
		if reread || shutErr != 0 {
			e.kickRead(ec)
		}
		if !more {
			return
		}
		if n < total {
			// The socket buffer is full: wait for EPOLLOUT, unless one
			// came since the write began. An EAGAIN made up by Faults
			// found no buffer full: write again.
			ec.mu.Lock()
			if ec.st&(ecWritable|ecClosed) == 0 && !injected {
				ec.st |= ecWaitOut
				ec.mu.Unlock()
				return
			}
			ec.mu.Unlock()
			continue
		}
		// All written, and more was queued meanwhile: back to the
		// FIFO's tail, to be written in the next round with what queues
		// until then.
		if e.fifo.add(ec) {
			e.fifo.wake()
		}
		return
	}
}
