package cport

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// A NetConn is a Conn adapted to net.Conn (Conn.NetConn): blocking Read
// and Write over the connection's completions, so that code written for
// Go's net (crypto/tls, net/http, WebSocket libraries) runs on the port's
// engine unchanged. Its methods are safe for concurrent use, as net.Conn's
// are.
//
// The adapted connection's completions do not go to the port's queue, nor
// to its Config.Handler: they go to the NetConn, on the goroutine that
// produced them, and wake the Read or Write waiting for them. The Conn's
// own Recv, RecvMulti, Send, SendQuiet and Detach then return ErrAdapted;
// its other methods (SetKey, SetValue, Queued, Written, Abort) still
// work, and Close, CloseWrite and the deadlines are the NetConn's.
//
// Read receives one chunk at a time (Conn.Recv): it blocks until bytes
// arrive, and what does not fit in its buffer waits, in the port's
// receive buffer, for the next Read, which releases the buffer as soon as
// it is copied out; an idle NetConn with no Read blocked holds no buffer
// (on the kernel engines). Write copies its bytes into messages, sends
// them and blocks until they are written; Writes are serialized, so that
// two never interleave. Neither may be called from a Config.Handler, or
// from a worker of a port whose workers must not block: they block.
type NetConn struct {
	c *Conn

	rmu  sync.Mutex // serializes Read; guards the fields below
	left Completion // the receive whose bytes Read has not all returned, from off on
	off  int
	rerr error // what ended receiving (the end of stream, a failure): Read returns it from then on

	wmu  sync.Mutex // serializes Write; guards wseq
	wseq uint64     // the tag of the last Write's sends

	// mu guards the fields below. Lock order: mu, then Conn.mu; the
	// connection hands its completions over (complete) with no lock of
	// its own held.
	mu     sync.Mutex
	rc, wc sync.Cond // on mu: a receive completed or Close; a send completed, the write deadline passed or Close
	rwait  bool      // a Read waits for its receive's completion
	rdone  bool      // and rcomp holds it
	rcomp  Completion
	wtag   uint64 // the tag of the sends the Write in progress waits for; older ones are stale
	wleft  int    // its sends not yet completed
	wn     int    // the bytes of its sends written
	werr   error  // the first failure among them
	closed bool
}

// The size of the messages a Write copies its bytes into, and how many of
// them it queues at most before it waits for the first to be written: a
// Write of many megabytes holds a megabyte of copies at most.
const (
	netChunk  = 256 << 10
	netWindow = 4
)

// NetConn adapts the connection to net.Conn. From then on its completions
// go to the returned NetConn only (see there), and the Conn's own Recv,
// RecvMulti, Send, SendQuiet and Detach return ErrAdapted.
//
// Only an idle connection can be adapted: with a receive in progress, a
// receive's completion not yet released, or a send queued or being
// written, NetConn returns ErrBusy and changes nothing (bytes received
// after a read deadline and waiting for the next receive are no
// obstacle: Read returns them first). It returns ErrAdapted for a
// connection adapted already, and ErrClosed for a closed one.
func (c *Conn) NetConn() (*NetConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, ErrClosed
	case c.netConnLocked() != nil:
		return nil, ErrAdapted
	case c.recvArmed || c.recvEnding || c.recvOut || c.sending || len(c.sendq) > 0:
		return nil, ErrBusy
	}
	return c.adaptLocked(), nil
}

// adaptLocked makes c's NetConn and routes c's completions to it.
func (c *Conn) adaptLocked() *NetConn {
	nc := &NetConn{c: c}
	nc.rc.L, nc.wc.L = &nc.mu, &nc.mu
	c.extLocked().nc = nc
	return nc
}

// netConnLocked returns the adapter c's completions go to, or nil: the
// port's queue (or handler).
func (c *Conn) netConnLocked() *NetConn {
	if c.ext == nil {
		return nil
	}
	return c.ext.nc
}

// push hands comp to the adapter nc, which the caller read under c.mu,
// or, if nil, to the port's queue. It is called with no lock held: a
// closed queue releases comp, and a handler may call back into c.
func (c *Conn) push(nc *NetConn, comp Completion) {
	if nc != nil {
		nc.complete(comp)
		return
	}
	c.p.q.push(comp)
}

// pushAll pushes every completion of cs (push).
func (c *Conn) pushAll(nc *NetConn, cs []Completion) {
	for _, comp := range cs {
		c.push(nc, comp)
	}
}

// complete takes a completion of the adapted connection, on the goroutine
// that produced it: it wakes the Read or Write waiting for it. A receive
// that no Read waits for any more (it left at Close) is released; a
// send of a Write that returned already (at its deadline) is forgotten.
func (nc *NetConn) complete(comp Completion) {
	nc.mu.Lock()
	switch comp.Op {
	case OpRecv:
		if nc.rwait && !nc.rdone {
			nc.rcomp, nc.rdone = comp, true
			nc.rc.Signal()
			nc.mu.Unlock()
			return
		}
		nc.mu.Unlock()
		comp.Release()
		return
	case OpSend:
		if comp.Tag == nc.wtag && nc.wleft > 0 {
			nc.wleft--
			if comp.Err == nil {
				nc.wn += comp.N
			} else if nc.werr == nil {
				nc.werr = comp.Err
			}
			nc.wc.Signal()
		}
	}
	nc.mu.Unlock()
}

// writeDeadlinePassed wakes the Write waiting, at the write deadline: the
// sends the kernel has taken do not fail, but the Write returns.
func (nc *NetConn) writeDeadlinePassed() {
	nc.mu.Lock()
	nc.wc.Signal()
	nc.mu.Unlock()
}

// Conn returns the adapted connection.
func (nc *NetConn) Conn() *Conn { return nc.c }

// Read reads up to len(p) bytes, blocking until some arrive: net.Conn's
// Read. It returns io.EOF once the peer has closed its side, and then
// on every call; an error that matches os.ErrDeadlineExceeded (and is a
// net.Error whose Timeout is true) once the read deadline has passed,
// until it is moved; one that matches net.ErrClosed ("use of closed
// network connection") once the NetConn or its port is closed, a Read
// blocked then returning at once; and the connection's failure (an
// *OpError) otherwise. Bytes that arrive after a read deadline has
// passed are not lost: the next Read returns them.
func (nc *NetConn) Read(p []byte) (int, error) {
	nc.rmu.Lock()
	defer nc.rmu.Unlock()
	c := nc.c
	nc.mu.Lock()
	closed := nc.closed
	nc.mu.Unlock()
	switch {
	case closed:
		return 0, nc.closedError("recv")
	case nc.left.Op != 0:
		// A passed deadline fails the Read even with bytes at hand, as
		// Go's net does: they wait for the next one.
		if c.readDeadlinePassed() {
			return 0, c.opError("recv", os.ErrDeadlineExceeded)
		}
		return nc.readLeft(p), nil
	case nc.rerr != nil:
		return 0, nc.rerr
	case len(p) == 0:
		return 0, nil
	}
	nc.mu.Lock()
	nc.rwait, nc.rdone = true, false
	nc.mu.Unlock()
	if err := c.startRecv(0, false, true); err != nil {
		nc.mu.Lock()
		nc.rwait = false
		nc.mu.Unlock()
		return 0, nc.recvError(err)
	}
	nc.mu.Lock()
	for !nc.rdone && !nc.closed {
		nc.rc.Wait()
	}
	comp, done := nc.rcomp, nc.rdone
	nc.rcomp, nc.rwait, nc.rdone = Completion{}, false, false
	nc.mu.Unlock()
	if !done {
		// Closed: the receive's completion comes later, and complete
		// releases it.
		return 0, nc.closedError("recv")
	}
	if comp.Err != nil {
		return 0, nc.recvError(comp.Err)
	}
	nc.left, nc.off = comp, 0
	return nc.readLeft(p), nil
}

// readLeft copies what p takes of the receive at hand, releasing its
// buffer once all of it is copied.
func (nc *NetConn) readLeft(p []byte) int {
	n := copy(p, nc.left.Buf[nc.off:])
	nc.off += n
	if nc.off == len(nc.left.Buf) {
		nc.left.Release()
		nc.left, nc.off = Completion{}, 0
	}
	return n
}

// recvError turns what ended a receive into Read's error, keeping those
// after which no receive can succeed.
func (nc *NetConn) recvError(err error) error {
	switch {
	case err == io.EOF:
		nc.rerr = io.EOF
		return io.EOF
	case isClosed(err):
		return nc.closedError("recv")
	case isTimeoutErr(err):
		return err
	}
	nc.rerr = err
	return err
}

// isClosed reports whether err is ErrClosed or ErrCanceled.
func isClosed(err error) bool { return err == ErrClosed || err == ErrCanceled }

// isTimeoutErr reports whether err is a timeout.
func isTimeoutErr(err error) bool {
	oe, ok := err.(*OpError)
	return ok && oe.Timeout()
}

// closedError is the error of a call on a closed NetConn, as Go's net
// reports one: it matches net.ErrClosed.
func (nc *NetConn) closedError(op string) error {
	return nc.c.opError(op, net.ErrClosed)
}

// Write writes p and blocks until all of it is written, or until it fails:
// net.Conn's Write, which returns n < len(p) only with an error. It
// copies p (a Write returns at its deadline or at Close while the kernel
// may still be writing what it took), in messages of up to 256 KiB, at
// most four of them queued at once. Concurrent Writes are serialized:
// each one's bytes go out together.
//
// Once the write deadline has passed, Write returns an error that matches
// os.ErrDeadlineExceeded (a net.Error whose Timeout is true), until the
// deadline is moved; n then counts the messages known to be written, and
// a message the kernel was already writing is still written whole, after
// Write has returned (see Conn.SetWriteDeadline): the peer never reads
// part of a message, but may read more of p than n says. After Close, or
// the port's, Write returns an error that matches net.ErrClosed.
func (nc *NetConn) Write(p []byte) (int, error) {
	nc.wmu.Lock()
	defer nc.wmu.Unlock()
	c := nc.c
	nc.wseq++
	tag := nc.wseq
	nc.mu.Lock()
	if nc.closed {
		nc.mu.Unlock()
		return 0, nc.closedError("send")
	}
	nc.wtag, nc.wleft, nc.wn, nc.werr = tag, 0, 0, nil
	nc.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	off := 0
	for {
		// Queue what the window takes.
		var err error
		nc.mu.Lock()
		room := netWindow - nc.wleft
		nc.mu.Unlock()
		queued := false
		for ; room > 0 && off < len(p); room-- {
			k := min(len(p)-off, netChunk)
			m := MsgOf(p[off : off+k])
			nc.mu.Lock()
			nc.wleft++
			nc.mu.Unlock()
			err = c.send(m, tag, false, true)
			m.Release()
			if err != nil {
				nc.mu.Lock()
				nc.wleft--
				nc.mu.Unlock()
				break
			}
			off += k
			queued = true
		}
		if queued && c.p.q.running.Load() > 0 {
			// A worker of the port runs: the engine's flush gate would
			// hold the write for its next Wait (Config.FlushDelay). A
			// Write's caller waits for it: start it now.
			c.p.eng.Submit()
		}
		// Wait for room in the window, or for the end.
		nc.mu.Lock()
		for err == nil && nc.werr == nil && !nc.closed && nc.wleft > 0 &&
			(off == len(p) || nc.wleft >= netWindow) {
			if c.writeDeadlinePassed() {
				err = c.opError("send", os.ErrDeadlineExceeded)
				break
			}
			nc.wc.Wait()
		}
		n, werr, closed, left := nc.wn, nc.werr, nc.closed, nc.wleft
		if err != nil || werr != nil || closed {
			nc.wtag = 0 // what is still to complete is stale
		}
		nc.mu.Unlock()
		switch {
		case closed:
			return n, nc.closedError("send")
		case werr != nil:
			return n, nc.sendError(werr)
		case err != nil:
			return n, nc.sendError(err)
		case off == len(p) && left == 0:
			return n, nil
		}
	}
}

// sendError turns a send's failure into Write's error.
func (nc *NetConn) sendError(err error) error {
	if isClosed(err) {
		return nc.closedError("send")
	}
	return err
}

// Close closes the connection as Conn.Close does, gracefully: what Write
// queued is still written, in the background, then the peer reads an end
// of stream. A Read or Write blocked returns at once with an error that
// matches net.ErrClosed, and so do later calls. Closing twice returns an
// error that matches net.ErrClosed, as Go's net does.
func (nc *NetConn) Close() error {
	nc.mu.Lock()
	if nc.closed {
		nc.mu.Unlock()
		return nc.closedError("close")
	}
	nc.closed = true
	nc.rc.Broadcast()
	nc.wc.Broadcast()
	nc.mu.Unlock()
	nc.c.Close()
	// A Read in progress has returned or is returning: it holds rmu no
	// longer than that. The bytes it left go back to the engine.
	nc.rmu.Lock()
	if nc.left.Op != 0 {
		nc.left.Release()
		nc.left, nc.off = Completion{}, 0
	}
	nc.rmu.Unlock()
	return nil
}

// CloseWrite shuts the writing side down (TCP's half-close), once what
// Write queued is written: the peer reads an end of stream, and Read goes
// on. Later Writes fail. It is Conn.CloseWrite, the method crypto/tls and
// net/http look for on a net.Conn.
func (nc *NetConn) CloseWrite() error {
	if err := nc.c.CloseWrite(); err != nil {
		return nc.closedError("close")
	}
	return nil
}

// LocalAddr returns the local address (Conn.LocalAddr).
func (nc *NetConn) LocalAddr() net.Addr { return nc.c.LocalAddr() }

// RemoteAddr returns the peer's address (Conn.RemoteAddr).
func (nc *NetConn) RemoteAddr() net.Addr { return nc.c.RemoteAddr() }

// SetDeadline sets the read and the write deadline: net.Conn's
// SetDeadline, on the port's timers (Conn.SetDeadline). A deadline in the
// past fails a blocked Read or Write at once; a zero t clears it.
func (nc *NetConn) SetDeadline(t time.Time) error {
	return nc.deadlineError(nc.c.SetDeadline(t))
}

// SetReadDeadline sets the read deadline (Conn.SetReadDeadline): a Read
// blocked when it passes returns an error that matches
// os.ErrDeadlineExceeded, and so do later Reads until it is moved; the
// bytes that arrive meanwhile wait for the next Read.
func (nc *NetConn) SetReadDeadline(t time.Time) error {
	return nc.deadlineError(nc.c.SetReadDeadline(t))
}

// SetWriteDeadline sets the write deadline (Conn.SetWriteDeadline): a
// Write blocked when it passes returns an error that matches
// os.ErrDeadlineExceeded, and so do later Writes until it is moved.
func (nc *NetConn) SetWriteDeadline(t time.Time) error {
	return nc.deadlineError(nc.c.SetWriteDeadline(t))
}

func (nc *NetConn) deadlineError(err error) error {
	if err != nil {
		return nc.closedError("set deadline")
	}
	return nil
}

// readDeadlinePassed reports whether c's read deadline has passed.
func (c *Conn) readDeadlinePassed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ext != nil && c.ext.r.passed(c.p)
}

// writeDeadlinePassed reports whether c's write deadline has passed.
func (c *Conn) writeDeadlinePassed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ext != nil && c.ext.w.passed(c.p)
}
