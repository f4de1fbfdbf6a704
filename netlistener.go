package cport

import (
	"net"
	"sync"
)

// A NetListener is a Listener adapted to net.Listener
// (Listener.NetListener): its Accept blocks until a connection comes and
// returns it adapted to net.Conn (a *NetConn), so that net/http's Server,
// or any other server written for Go's net, serves on the port's engine.
// Its methods are safe for concurrent use.
//
// The adapted listener's accept completions go to the NetListener, not to
// the port's queue; the Listener's own Accept and AcceptMulti return
// ErrAdapted. Each Accept starts one accept (Listener.Accept) and waits
// for it: connections that no Accept asks for wait in the kernel's
// backlog, as with Go's net.
type NetListener struct {
	l *Listener

	amu sync.Mutex // serializes Accept

	mu   sync.Mutex // guards the fields below
	cond sync.Cond  // on mu: the accept completed
	wait bool       // an Accept waits for its accept's completion
	done bool       // and comp holds it
	comp Completion
}

// NetListener adapts the listener to net.Listener (see NetListener). It
// returns ErrBusy with an accept in progress, ErrAdapted for a listener
// adapted already, and ErrClosed for a closed one.
func (l *Listener) NetListener() (*NetListener, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return nil, ErrClosed
	case l.nl != nil:
		return nil, ErrAdapted
	case l.accepting:
		return nil, ErrBusy
	}
	nl := &NetListener{l: l}
	nl.cond.L = &nl.mu
	l.nl = nl
	return nl, nil
}

// complete takes an accept's completion, on the goroutine that produced
// it, for the Accept waiting. (None comes that no Accept waits for: each
// Accept starts one accept and waits for its end. Should one come all the
// same, its connection is closed.)
func (nl *NetListener) complete(comp Completion) {
	nl.mu.Lock()
	if !nl.wait || nl.done {
		nl.mu.Unlock()
		if comp.Conn != nil {
			comp.Conn.Close()
		}
		return
	}
	nl.comp, nl.done = comp, true
	nl.cond.Signal()
	nl.mu.Unlock()
}

// Accept waits for the next connection and returns it, a *NetConn:
// net.Listener's Accept. Once the listener or its port is closed it
// returns an error that matches net.ErrClosed, as Go's net does, an
// Accept blocked then returning at once. Other errors are *OpErrors; one
// whose Temporary is true (running out of file descriptors) leaves the
// listener usable, and net/http's Server tries again after a pause.
func (nl *NetListener) Accept() (net.Conn, error) {
	nl.amu.Lock()
	defer nl.amu.Unlock()
	l := nl.l
	nl.mu.Lock()
	nl.wait, nl.done = true, false
	nl.mu.Unlock()
	if err := l.start(0, false, true); err != nil {
		nl.mu.Lock()
		nl.wait = false
		nl.mu.Unlock()
		return nil, nl.closedError()
	}
	// The accept ends with a connection or an error, at Close with
	// ErrCanceled: the wait always ends.
	nl.mu.Lock()
	for !nl.done {
		nl.cond.Wait()
	}
	comp := nl.comp
	nl.comp, nl.wait, nl.done = Completion{}, false, false
	nl.mu.Unlock()
	switch {
	case comp.Err == nil:
		return comp.Conn.ext.nc, nil
	case isClosed(comp.Err):
		return nil, nl.closedError()
	}
	return nil, comp.Err
}

func (nl *NetListener) closedError() error {
	return &OpError{Op: "accept", Backend: nl.l.p.backend, Addr: nl.l.addr, Err: net.ErrClosed}
}

// Close closes the listener (Listener.Close): an Accept blocked returns
// an error that matches net.ErrClosed. Connections accepted already stay
// open.
func (nl *NetListener) Close() error { return nl.l.Close() }

// Addr returns the listener's address (Listener.Addr).
func (nl *NetListener) Addr() net.Addr { return nl.l.Addr() }

// Listener returns the adapted listener.
func (nl *NetListener) Listener() *Listener { return nl.l }
