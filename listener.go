package cport

import (
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"cport.dev/cport/internal/engine"
)

// A Listener is a listening socket associated with a port. Its accepts
// complete with OpAccept, Completion.Conn holding the new connection.
type Listener struct {
	p    *Port
	key  uint64
	io   engine.Listener // the engine's side; set before the Listener is published
	addr net.Addr        // set before the Listener is published
	// local is the local address of the last connection accepted, shared
	// by the next ones that have the same (all of them, but for a listener
	// bound to every address): an idle connection costs 32 bytes less.
	local atomic.Pointer[localAddr]
	// unlink is the file of a Unix socket Listen made, removed at Close;
	// set before the Listener is published.
	unlink string

	mu        sync.Mutex // guards the fields below
	accepting bool       // an accept is in progress
	multi     bool       // it goes on after each connection
	tag       uint64
	closed    bool
	nl        *NetListener // the net.Listener adapter its accepts go to (NetListener); set once
}

// Key returns the listener's completion key.
func (l *Listener) Key() uint64 { return l.key }

// Addr returns the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept accepts one connection (AcceptEx): a completion of op OpAccept and
// the given tag follows, with the new connection or an error.
func (l *Listener) Accept(tag uint64) error { return l.start(tag, false, false) }

// AcceptMulti keeps accepting: a completion follows for every connection,
// until the listener is closed (a last completion with ErrCanceled). Errors
// that leave the listener usable, such as running out of file descriptors
// (EMFILE), complete with the error and accepting goes on after a pause.
func (l *Listener) AcceptMulti(tag uint64) error { return l.start(tag, true, false) }

// start starts accepting; adapter says the caller is the listener's
// NetListener, the only one that may accept on an adapted listener.
func (l *Listener) start(tag uint64, multi, adapter bool) error {
	l.mu.Lock()
	switch {
	case l.nl != nil && !adapter:
		l.mu.Unlock()
		return ErrAdapted
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.accepting:
		l.mu.Unlock()
		return ErrBusy
	}
	l.accepting, l.multi, l.tag = true, multi, tag
	l.mu.Unlock()
	l.io.Accept()
	return nil
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
	l.io.Close()
	if l.unlink != "" {
		os.Remove(l.unlink) // as net's UnixListener.Close: a failure leaves nothing to do
	}
}

// listenUnix is Listen of a Unix socket: made by Go's net, adopted, the
// original closed (leaving the file, which the Listener removes at its
// close).
func (p *Port) listenUnix(address string, key uint64) (*Listener, error) {
	la, err := net.ResolveUnixAddr("unix", address)
	if err != nil {
		return nil, &OpError{Op: "listen", Backend: p.backend, Err: err}
	}
	nl, err := net.ListenUnix("unix", la)
	if err != nil {
		return nil, &OpError{Op: "listen", Backend: p.backend, Addr: la, Err: err}
	}
	nl.SetUnlinkOnClose(false)
	unlink := address
	if strings.HasPrefix(address, "@") {
		unlink = "" // abstract: no file
	}
	l, err := p.adoptListener(nl, key, unlink)
	nl.Close()
	if err != nil {
		if unlink != "" {
			os.Remove(unlink)
		}
		var oe *OpError
		if errors.As(err, &oe) {
			oe.Op, oe.Addr = "listen", la
		}
		return nil, err
	}
	return l, nil
}

// listenerOwner is the port's side of a listener as its engine sees it
// (engine.ListenerOwner): the Listener under another name, so that the
// methods the engine calls are not part of Listener's API.
type listenerOwner Listener

// AcceptState says whether an accept is in progress (still so after Close,
// until the engine reports its end), and whether it goes on.
func (o *listenerOwner) AcceptState() (want, multi bool) {
	l := (*Listener)(o)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepting, l.multi
}

// NewConn makes the Conn of a connection the engine accepted. It keeps
// neither address it is given, only copies (see engine.ListenerOwner).
func (o *listenerOwner) NewConn(ec engine.Conn, laddr, raddr net.Addr) engine.ConnOwner {
	ap := addrPort(laddr)
	local := o.local.Load()
	if local == nil || local.ap != ap {
		local = &localAddr{ap: ap}
		o.local.Store(local)
	}
	return (*connOwner)(newConn(o.p, ec, local, addrPort(raddr)))
}

// Accepted completes the accept with a new connection, or closes it if the
// port is closed. It reports whether to go on accepting.
func (o *listenerOwner) Accepted(co engine.ConnOwner) bool {
	l := (*Listener)(o)
	c := (*Conn)(co.(*connOwner))
	l.mu.Lock()
	tag, multi, nl := l.tag, l.multi, l.nl
	if !multi {
		l.accepting = false
	}
	l.mu.Unlock()
	if nl != nil {
		// Adapted before anyone sees it: none of its completions can
		// come before.
		c.mu.Lock()
		c.adaptLocked()
		c.mu.Unlock()
	}
	if !l.p.adopt(c) {
		c.close()
		if nl != nil {
			nl.complete(Completion{Op: OpAccept, Key: l.key, Tag: tag, Err: ErrCanceled, Listener: l})
		}
		return false
	}
	l.push(nl, Completion{Op: OpAccept, Key: l.key, Tag: tag, Conn: c, Listener: l})
	return multi
}

// AcceptFailed completes the accept with err, the system's error (wrapped
// here in an OpError) or ErrCanceled. final says the accept cannot go on.
// It reports whether to go on accepting.
func (o *listenerOwner) AcceptFailed(err error, final bool) bool {
	l := (*Listener)(o)
	l.mu.Lock()
	tag, multi, nl := l.tag, l.multi, l.nl
	if l.closed {
		err, final = ErrCanceled, true
	}
	if !multi || final {
		l.accepting = false
	}
	l.mu.Unlock()
	if !errors.Is(err, ErrCanceled) {
		err = &OpError{Op: "accept", Backend: l.p.backend, Addr: l.addr, Err: err}
	}
	l.push(nl, Completion{Op: OpAccept, Key: l.key, Tag: tag, Err: err, Listener: l})
	return multi && !final
}

// push hands an accept's completion to the adapter nl, which the caller
// read under l.mu, or, if nil, to the port's queue.
func (l *Listener) push(nl *NetListener, comp Completion) {
	if nl != nil {
		nl.complete(comp)
		return
	}
	l.p.q.push(comp)
}
