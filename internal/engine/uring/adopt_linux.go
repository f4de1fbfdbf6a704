package uring

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The uring engine's adopted sockets: a duplicate of the caller's
// descriptor, which then lives as a dialed connection (in the rings in
// turn) or as a listener of Listen's (in the first ring); and detached
// ones, checked by the loop.

// AdoptConn makes a connection of a duplicate of sc's socket, in the
// rings taken in turn as by Dial; the ring takes it at its first request.
func (b *portEngine) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	a, err := sockopt.Adopt(sc, false)
	if err != nil {
		return nil, err
	}
	e := b.rings[int(b.nextDial.Add(1)-1)%len(b.rings)]
	u := &uconn{e: e, fd: int32(a.FD), slot: noSlot}
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
	return &ulistener{owner: owner, e: b.rings[0], addr: a.Local, fd: a.FD, slot: noSlot}, nil
}

// detachReq is a Detach handed to the loop: the loop sets f and err, then
// closes done.
type detachReq struct {
	f    *os.File
	err  error
	done chan struct{}
}

// errKernelRecv is the error of a detach whose connection still has a
// receive in the kernel, which package cport no longer sees (one ended
// for the owner by a failure, being canceled): what it reads would be
// lost to the detached socket.
var errKernelRecv = errors.New("cport: uring: a receive or send of the connection is still in the kernel")

// Detach returns a duplicate of u's socket once its loop has checked
// that the kernel holds no receive or send of it: on the loop's own
// goroutine (a Config.Handler run there) at once, from any other one by
// a request the loop answers. Package cport then closes u, a request
// after this one.
func (u *uconn) Detach() (*os.File, error) {
	e := u.e
	if unix.Gettid() == e.tid {
		// The loop itself: its thread runs no other goroutine.
		return e.detach(u)
	}
	r := &detachReq{done: make(chan struct{})}
	e.post(ureq{op: rqDetach, u: u, x: r}, true)
	select {
	case <-r.done:
	case <-e.done:
		// The loop has returned; it may have answered on its way out.
		select {
		case <-r.done:
		default:
			// Never handled: a Detach racing Port.Close. A connection
			// that never reached the loop's tables is closed by no
			// one else (shutdown closes those in them); the loop gone,
			// its fields are this goroutine's.
			if u.slot == noSlot && u.fd >= 0 {
				unix.Close(int(u.fd))
				u.fd = -1
			}
			return nil, engine.ErrClosed
		}
	}
	return r.f, r.err
}

// detach is Detach on the loop.
func (e *ringEngine) detach(u *uconn) (*os.File, error) {
	switch {
	case u.flags.has(fClosing) || u.fd < 0:
		return nil, engine.ErrClosed
	case u.flags.has(fRecvOn|fSendNext) || u.send != sendNone:
		return nil, errKernelRecv
	}
	return sockopt.Detached(int(u.fd), "cport-detached")
}
