package epoll

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The epoll engine's adopted sockets and detaches: see doc.go, "Adopted
// sockets".

// AdoptConn registers a duplicate of sc's connected socket with a poller,
// as an accepted one.
func (e *Engine) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	a, err := sockopt.Adopt(sc, false)
	if err != nil {
		return nil, err
	}
	ec := &conn{e: e, fd: int32(a.FD), gen: e.newGen(false)}
	ec.owner = newOwner(ec, a.Local, a.Remote)
	if err := e.register(ec); err != nil {
		e.closeSocket(ec.fd)
		return nil, err
	}
	return ec.owner, nil
}

// AdoptListener registers a duplicate of sc's listening socket with a
// poller, as one of Listen's.
func (e *Engine) AdoptListener(sc syscall.Conn, owner engine.ListenerOwner) (engine.Listener, error) {
	a, err := sockopt.Adopt(sc, true)
	if err != nil {
		return nil, err
	}
	el := &listener{owner: owner, e: e, fd: int32(a.FD), gen: e.newGen(true), addr: a.Local, done: make(chan struct{})}
	if ta, ok := a.Local.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		el.local = ta
	}
	el.st = elReadable // a first accept4 finds out
	if err := e.registerListener(el); err != nil {
		e.closeSocket(el.fd)
		return nil, err
	}
	return el, nil
}

// Detach takes the socket out of its poller (EPOLL_CTL_DEL: a duplicate
// keeps the open file, and with it the registration, alive) and returns
// a duplicate of it; package cport then closes ec. Under ec.mu, with
// ecClosed not set: the descriptor is open (only a reader or writer that
// saw ecClosed closes it).
func (ec *conn) Detach() (*os.File, error) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	if ec.st&ecClosed != 0 {
		return nil, engine.ErrClosed
	}
	// Under e.mu, the engine not closed: the epoll sets are open (Close
	// closes them once closed is set). A closed engine's sets are going.
	ec.e.mu.RLock()
	if !ec.e.closed {
		for _, pl := range ec.e.pollers {
			// The socket is in one of them; the others say ENOENT.
			unix.EpollCtl(pl.epfd, unix.EPOLL_CTL_DEL, int(ec.fd), nil)
		}
	}
	ec.e.mu.RUnlock()
	return sockopt.Detached(int(ec.fd), "cport-detached")
}
