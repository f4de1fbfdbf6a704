package epoll

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The epoll engine's sends and their coalescing: see doc.go.

// flush is called when ec's send queue became non-empty with no write in
// flight (Conn.Flush). The write is left to the connection's flusher, so
// that the caller goes on queuing (a fan-out queues on every connection
// before the first is written). While a worker runs, the flusher is not
// even woken: the worker's Submit does that once its batch has queued all
// it will.
func (e *Engine) flush(ec *conn) {
	fl := e.flushers[ec.fl]
	if !fl.add(ec) {
		return // the flusher has work already: woken, or to be woken as that was
	}
	if e.gate.Hold() {
		return // for the running worker's submit
	}
	fl.wake()
}

// Submit starts the writes deferred by a worker's batch. A few it makes
// itself, sparing a goroutine switch (a reply to a request); more it leaves
// to the flushers, so that the worker goes back to its completions while
// the flushers write (a fan-out), each on its own goroutine.
func (e *Engine) Submit() {
	e.gate.Submitted()
	for _, fl := range e.flushers {
		switch n := fl.n.Load(); {
		case n == 0:
		case n <= submitInline:
			var batch [submitInline]*conn
			k := fl.take(batch[:n])
			s := e.getScratch()
			for _, ec := range batch[:k] {
				e.write(ec, s)
			}
			e.putScratch(s)
		default:
			fl.wake()
		}
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
func (e *Engine) deferred() bool {
	for _, fl := range e.flushers {
		if fl.n.Load() > 0 {
			return true
		}
	}
	return false
}

// flusher writes the connections of one poller whose write was
// deferred: a FIFO of them, and a goroutine draining it when woken. A
// connection is in the FIFO at most once (it holds the write token); one
// written whole that found more queued meanwhile goes back to the tail, so
// that every connection with something to send is written once per round
// and the messages that queue during a round go out together.
type flusher struct {
	e       *Engine
	kick    chan struct{} // capacity 1: the FIFO has work
	n       atomic.Int32  // len(q) - head, for Submit to look without the lock
	scratch scratch       // owned by the flusher's goroutine

	mu   sync.Mutex // guards q and head
	q    []*conn
	head int
}

// add appends ec to the FIFO and reports whether it was empty.
func (fl *flusher) add(ec *conn) bool {
	fl.mu.Lock()
	fl.q = append(fl.q, ec)
	first := fl.n.Add(1) == 1
	fl.mu.Unlock()
	return first
}

func (fl *flusher) wake() {
	select {
	case fl.kick <- struct{}{}:
	default:
	}
}

// take moves up to len(dst) connections from the head of the FIFO into
// dst.
func (fl *flusher) take(dst []*conn) int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	k := copy(dst, fl.q[fl.head:])
	clear(fl.q[fl.head : fl.head+k])
	fl.head += k
	fl.n.Add(int32(-k))
	switch {
	case fl.head == len(fl.q):
		fl.q, fl.head = fl.q[:0], 0
	case fl.head > len(fl.q)/2:
		m := copy(fl.q, fl.q[fl.head:])
		clear(fl.q[m:])
		fl.q, fl.head = fl.q[:m], 0
	}
	return k
}

func (fl *flusher) run() {
	defer fl.e.wg.Done()
	for {
		select {
		case <-fl.kick:
		case <-fl.e.done:
			return
		}
		fl.drain(&fl.scratch)
	}
}

// drain writes the FIFO's connections until it is empty.
func (fl *flusher) drain(s *scratch) {
	var batch [64]*conn
	for {
		k := fl.take(batch[:])
		if k == 0 {
			return
		}
		for _, ec := range batch[:k] {
			fl.e.write(ec, s)
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
		if len(s.vecs) > 0 {
			n, err = sockopt.Writev(int(ec.fd), s.vecs)
			e.writes.Add(1)
		}
		if err == unix.EAGAIN {
			n, err = 0, nil
		}
		if err != nil {
			unix.Shutdown(int(ec.fd), unix.SHUT_RDWR) // the receive ends with the send's error
			err = os.NewSyscallError("writev", err)
		}
		clear(s.iov)
		clear(s.vecs)
		s.iov, s.vecs = s.iov[:0], s.vecs[:0]
		more := owner.SendDone(n, err) // before ecWriting goes: see ecEOFWait
		ec.mu.Lock()
		ec.st &^= ecWriting
		closeFD := ec.releasableLocked()
		reread := ec.st&ecEOFWait != 0
		if reread {
			ec.st = ec.st&^ecEOFWait | ecReadable
		}
		ec.mu.Unlock()
		if closeFD {
			e.closeFD(ec)
		}
		if reread {
			e.kickRead(ec)
		}
		if !more {
			return
		}
		if n < total {
			// The socket buffer is full: wait for EPOLLOUT, unless one
			// came since the write began.
			ec.mu.Lock()
			if ec.st&(ecWritable|ecClosed) == 0 {
				ec.st |= ecWaitOut
				ec.mu.Unlock()
				return
			}
			ec.mu.Unlock()
			continue
		}
		// All written, and more was queued meanwhile: back to the
		// flusher's FIFO, to be written in its next round with what
		// queues until then.
		if fl := e.flushers[ec.fl]; fl.add(ec) {
			fl.wake()
		}
		return
	}
}
