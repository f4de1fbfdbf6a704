package epoll

import (
	"net"
	"os"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The epoll engine's dials: see doc.go, "Dials".

// dial is a connect in progress: its owner, and the address dialed;
// canceled says CancelDial shut its socket down, for its poller to end it.
type dial struct {
	owner    engine.DialOwner
	raddr    net.Addr
	canceled bool
}

// Dial opens a non-blocking socket and starts connect(2). A connect that
// fails at once is reported at once; one in progress is registered with a
// poller, whose first event on it finishes the dial (finishDial).
func (e *Engine) Dial(raddr net.Addr, owner engine.DialOwner) error {
	var raw unix.RawSockaddrAny
	fd, salen, err := sockopt.DialSocket(raddr, &raw)
	if err != nil {
		return err
	}
	switch err := sockopt.Connect(fd, &raw, salen); err {
	case nil, unix.EINPROGRESS, unix.EINTR:
		// Connected at once (a Unix socket), or on its way: the
		// registration's first event says which.
	default:
		e.closeSocket(int32(fd))
		owner.Failed(os.NewSyscallError("connect", err))
		return nil
	}
	ec := &conn{e: e, fd: int32(fd), gen: e.newGen(false), st: ecDialing}
	e.dialMu.Lock()
	e.dials[ec] = dial{owner: owner, raddr: raddr}
	e.dialMu.Unlock()
	if err := e.register(ec); err != nil {
		e.dialMu.Lock()
		delete(e.dials, ec)
		e.dialMu.Unlock()
		e.closeSocket(ec.fd)
		return err
	}
	return nil
}

// finishDial ends the dial of ec, whose socket its poller saw ready (the
// caller cleared ecDialing), unless the wake-up was a spurious one:
// then ecDialing is set again, for the next event. Only ec's poller
// calls it, one event at a time.
func (e *Engine) finishDial(ec *conn) {
	e.dialMu.Lock()
	d, ok := e.dials[ec]
	if ok && d.canceled {
		delete(e.dials, ec)
	}
	e.dialMu.Unlock()
	if ok && d.canceled {
		e.closeFD(ec, false)
		d.owner.Failed(engine.ErrCanceled)
		return
	}
	done, err := sockopt.ConnectResult(int(ec.fd))
	if !done {
		ec.mu.Lock()
		ec.st |= ecDialing
		ec.mu.Unlock()
		return
	}
	e.dialMu.Lock()
	d, ok = e.dials[ec]
	delete(e.dials, ec)
	e.dialMu.Unlock()
	if !ok {
		return // cannot happen: Close ends the dials once the pollers are gone
	}
	if d.canceled {
		err = engine.ErrCanceled // the connect won the race, too late
	}
	if err != nil {
		e.closeFD(ec, false)
		d.owner.Failed(err)
		return
	}
	var laddr net.Addr
	if sa, err := unix.Getsockname(int(ec.fd)); err == nil {
		laddr = sockopt.SockAddr(sa)
	}
	// The event's readiness is in ec.st already (handle): a receive
	// armed from now on reads what came with the connection.
	ec.owner = d.owner.NewConn(ec, laddr, d.raddr)
	d.owner.Connected(ec.owner)
}

// CancelDial shuts owner's connecting socket down, which aborts the
// connect (tcp_disconnect) and raises an event: the socket's poller then
// ends the dial (finishDial). The socket is open while its dial is listed:
// finishDial unlists it, under dialMu, before it closes it.
func (e *Engine) CancelDial(owner engine.DialOwner) {
	e.dialMu.Lock()
	defer e.dialMu.Unlock()
	for ec, d := range e.dials {
		if d.owner == owner && !d.canceled {
			d.canceled = true
			e.dials[ec] = d
			e.shutdown(ec.fd, unix.SHUT_RDWR)
			return
		}
	}
}

// endDials ends the dials still connecting when the engine closes, its
// pollers gone: each socket is closed, each owner told ErrCanceled.
func (e *Engine) endDials() {
	e.dialMu.Lock()
	dials := e.dials
	e.dials = make(map[*conn]dial)
	e.dialMu.Unlock()
	for ec, d := range dials {
		e.closeFD(ec, false)
		d.owner.Failed(engine.ErrCanceled)
	}
}
