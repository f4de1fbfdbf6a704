package cport

import (
	"net"
	"sync"
	"time"
)

// A Listener is a listening socket associated with a port. Its accepts
// complete with OpAccept, Completion.Conn holding the new connection.
type Listener struct {
	p   *Port
	key uint64
	sys any // the backend's state

	mu        sync.Mutex // guards the fields below
	addr      net.Addr
	accepting bool // an accept is in progress
	multi     bool // it goes on after each connection
	tag       uint64
	closed    bool
}

// Key returns the listener's completion key.
func (l *Listener) Key() uint64 { return l.key }

// Addr returns the address the listener is bound to.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

// Accept accepts one connection (AcceptEx): a completion of op OpAccept and
// the given tag follows, with the new connection or an error.
func (l *Listener) Accept(tag uint64) error { return l.start(tag, false) }

// AcceptMulti keeps accepting: a completion follows for every connection,
// until the listener is closed (a last completion with ErrCanceled). Errors
// that leave the listener usable, such as running out of file descriptors
// (EMFILE), complete with the error and accepting goes on after a pause.
func (l *Listener) AcceptMulti(tag uint64) error { return l.start(tag, true) }

func (l *Listener) start(tag uint64, multi bool) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return net.ErrClosed
	case l.accepting:
		l.mu.Unlock()
		return ErrBusy
	}
	l.accepting, l.multi, l.tag = true, multi, tag
	l.mu.Unlock()
	return l.p.be.accept(l)
}

// Close closes the listening socket; an accept in progress completes with
// ErrCanceled. Connections already accepted are not affected.
func (l *Listener) Close() error {
	l.p.forgetListener(l)
	l.close()
	return nil
}

func (l *Listener) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.p.be.closeListener(l)
}

// accepted is called by the backend with a new connection. It completes the
// accept, or closes c if the port is closed. It reports whether to go on
// accepting.
func (l *Listener) accepted(c *Conn) bool {
	l.mu.Lock()
	tag, multi := l.tag, l.multi
	if !multi {
		l.accepting = false
	}
	l.mu.Unlock()
	if !l.p.adopt(c) {
		c.close()
		return false
	}
	l.p.q.push(Completion{Op: OpAccept, Key: l.key, Tag: tag, Conn: c, Listener: l})
	return multi
}

// acceptFailed is called by the backend when an accept failed with err
// (already wrapped). final says the accept cannot go on. It reports whether
// to go on accepting.
func (l *Listener) acceptFailed(err error, final bool) bool {
	l.mu.Lock()
	tag, multi := l.tag, l.multi
	if l.closed {
		err, final = ErrCanceled, true
	}
	if !multi || final {
		l.accepting = false
	}
	l.mu.Unlock()
	l.p.q.push(Completion{Op: OpAccept, Key: l.key, Tag: tag, Err: err, Listener: l})
	return multi && !final
}

// nextAcceptPause is every engine's back-off after an accept failed with a
// shortage (EMFILE, ENFILE, ENOBUFS) or another error that leaves the
// listener usable: the first pause is 5 ms, each next one twice the last,
// up to a second; a connection accepted resets it to zero. Accepting
// again too soon would spin the CPU while descriptors are short; too late,
// and the clients wait once they are back.
func nextAcceptPause(last time.Duration) time.Duration {
	return min(max(2*last, 5*time.Millisecond), time.Second)
}
