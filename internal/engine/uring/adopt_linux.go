package uring

import (
	"net"
	"syscall"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The uring engine's adopted sockets: a duplicate of the caller's
// descriptor, which then lives as a dialed connection (in the rings in
// turn) or as a listener of Listen's (in the first ring). A connection
// cannot be detached on this engine: its receive and its send are the
// loop's, in the kernel beyond what package cport sees.

// AdoptConn makes a connection of a duplicate of sc's socket, in the
// rings taken in turn as by Dial; the ring takes it at its first request.
func (b *portEngine) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	a, err := sockopt.Adopt(sc, false)
	if err != nil {
		return nil, err
	}
	if _, ok := a.Local.(*net.TCPAddr); ok {
		sockopt.SetNoDelay(a.FD) // as Go's net does; a failure only costs latency
	}
	e := b.rings[int(b.nextDial.Add(1)-1)%len(b.rings)]
	u := &uconn{e: e, fd: a.FD, slot: noSlot}
	u.c = newOwner(u, a.Local, a.Remote)
	return u.c, nil
}

// AdoptListener makes a listener of a duplicate of sc's socket, in the
// first ring, as Listen does.
func (b *portEngine) AdoptListener(sc syscall.Conn, owner engine.ListenerOwner) (engine.Listener, error) {
	a, err := sockopt.Adopt(sc, true)
	if err != nil {
		return nil, err
	}
	if _, ok := a.Local.(*net.TCPAddr); ok {
		sockopt.SetNoDelay(a.FD) // accepted sockets inherit it
	}
	return &ulistener{owner: owner, e: b.rings[0], addr: a.Local, fd: a.FD, slot: noSlot}, nil
}
