package uring

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// Sends written by the workers.
//
// A worker's sends (Conn.Flush while it runs) wait for its Submit, as on
// every engine, in the engine's list (outq). There a few connections, up
// to writeInline, are written by the worker itself: writev(2) of each
// one's queue, non-blocking, on its own goroutine. That is a reply to a
// request, which would otherwise cost a wake-up of the ring's loop (an
// eventfd write and a thread switch) for one send. More connections (a
// fan-out) are handed to their loops, whose sendmsg submissions cost less
// per message than a writev each: measured at 10,000 clients, the
// workers writing every send raised the server's CPU per delivery from
// 200-232 ns to 268-285 ns (docs/bench/ENGINES.md, 2026-12-07). A write the socket
// does not take whole (EAGAIN) goes on in the ring, as a sendmsg that the
// kernel completes once the socket has room: a worker never waits for a
// peer.
//
// A port run to completion (Config.Handler) keeps its sends in the ring:
// its handler runs on the loop, whose next io_uring_enter submits them
// with no system call of their own. So do sends from goroutines other than
// the workers, which the loop is woken for.

// outq is the engine's list of connections whose write waits for a
// worker's Submit. A connection is in it at most once: it is there from a
// Flush (the owner's write token, see engine.Conn.Flush) to the Submit
// that takes it.
type outq struct {
	n  atomic.Int32 // len(q), for Submit to look without the lock
	mu sync.Mutex
	q  []*uconn
}

const (
	// writeInline is the most connections whose writes a Submit makes
	// itself.
	writeInline = 4
	// outBatch is how many connections are taken from the list at a
	// time.
	outBatch = 64
)

func (o *outq) add(u *uconn) {
	o.mu.Lock()
	o.q = append(o.q, u)
	o.n.Add(1)
	o.mu.Unlock()
}

// take moves up to len(dst) connections from the tail of the list into
// dst. (A list taken in any order is written whole by the Submits that
// take it: the order of connections within a batch is nobody's promise.)
func (o *outq) take(dst []*uconn) int {
	o.mu.Lock()
	k := copy(dst, o.q[max(0, len(o.q)-len(dst)):])
	clear(o.q[len(o.q)-k:])
	o.q = o.q[:len(o.q)-k]
	if len(o.q) == 0 && cap(o.q) > maxIdleReqs {
		o.q = nil // a burst is over: let go of its memory
	}
	o.n.Add(int32(-k))
	o.mu.Unlock()
	return k
}

// Bits of uconn.wr: who may use the descriptor outside the loop.
const (
	wrWriting uint32 = 1 << iota // a worker writes the socket
	wrClosing                    // the loop closes the connection: no worker may start writing
)

// startWrite gives the calling worker the descriptor for a write, unless
// the loop is closing the connection.
func (u *uconn) startWrite() bool {
	for {
		old := u.wr.Load()
		if old&wrClosing != 0 {
			return false
		}
		if u.wr.CompareAndSwap(old, old|wrWriting) {
			return true
		}
	}
}

// endWrite gives the descriptor back. Should the loop have begun closing
// meanwhile, it waits for this (finishIfQuiet): it is told to look again.
func (u *uconn) endWrite() {
	if u.wr.And(^wrWriting)&wrClosing != 0 {
		u.e.post(ureq{op: rqQuiet, u: u}, true)
	}
}

// writeOut writes up to writeInline connections of the list: those the
// caller counted there (a fan-out another worker queued meanwhile is left
// for its own Submit, which hands it to the loops). It runs on a worker
// (or the flush gate's timer), under b.live's read lock.
func (b *portEngine) writeOut() {
	var (
		batch [writeInline]*uconn
		s     scratch
	)
	k := b.out.take(batch[:])
	for _, u := range batch[:k] {
		b.write(u, &s)
	}
}

// handOut hands the list to the loops: Flush found no worker running, so
// no Submit is coming. Each connection's loop writes it.
func (b *portEngine) handOut() {
	var batch [outBatch]*uconn
	for b.out.n.Load() > 0 {
		k := b.out.take(batch[:])
		for _, u := range batch[:k] {
			u.e.post(ureq{op: rqFlush, u: u}, false)
		}
		clear(batch[:k])
	}
	for _, e := range b.rings {
		if e.pending.Load() > 0 {
			e.wake()
		}
	}
}

// scratch is a worker's memory for its writes.
type scratch struct {
	bufs [][]byte
	vecs []unix.Iovec
}

// write writes u's queue from a worker, which holds its write token: until
// the queue is written, the socket is full (the ring goes on), or the
// write fails.
func (b *portEngine) write(u *uconn, s *scratch) {
	if !u.startWrite() {
		// Closing: the loop ends the write (ErrCanceled).
		u.e.post(ureq{op: rqFlush, u: u}, true)
		return
	}
	for {
		s.bufs = u.c.SendBatch(s.bufs[:0], maxIov)
		var total int
		s.vecs, total = sockopt.AppendIovecs(s.vecs[:0], s.bufs)
		n, err := 0, error(nil)
		if total > 0 {
			n, err = b.writev(int(u.fd), s.vecs)
		}
		clear(s.bufs)
		clear(s.vecs)
		if err == unix.EAGAIN {
			n, err = 0, nil
		}
		if err != nil {
			err = os.NewSyscallError("writev", err)
			u.c.SendDone(0, err)
			u.endWrite()
			// The loop breaks the connection, as after a send of its own
			// that failed: the receive ends with the error.
			u.e.post(ureq{op: rqBreak, u: u}, true)
			return
		}
		more := u.c.SendDone(n, nil)
		if !more {
			u.endWrite()
			return
		}
		if n < total {
			// The socket is full: the ring writes the rest once it has
			// room. The token goes with the request.
			u.endWrite()
			u.e.post(ureq{op: rqFlush, u: u}, true)
			return
		}
		// All written, and more was queued meanwhile: write again.
	}
}

// writev is writev(2) of a worker's write, with Faults: EINTR is retried.
func (b *portEngine) writev(fd int, vecs []unix.Iovec) (int, error) {
	b.sends.Add(1)
	for {
		if errno := b.cfg.Faults.Fail(engine.CallSend); errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			return 0, errno
		}
		return sockopt.Writev(fd, vecs)
	}
}
