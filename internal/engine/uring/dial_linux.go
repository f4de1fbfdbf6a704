package uring

import (
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// The uring engine's dials: an IORING_OP_CONNECT each, in the ring that
// then keeps the connection.

// udial is a connect in progress. The loop of its ring owns the fields
// marked "loop"; the others are set by Dial, before the request is posted,
// and read-only after.
type udial struct {
	owner engine.DialOwner
	raddr net.Addr
	fd    int
	sa    unix.RawSockaddrAny // the peer's address, which the kernel reads
	salen uint32
	slot  uint32         // loop: in the ring's dials
	pin   runtime.Pinner // loop: the udial, from the submission to the CQE
}

// Dial opens a non-blocking socket and hands the connect to a ring, the
// rings taking dials in turn; the connection stays in that ring.
func (b *portEngine) Dial(raddr net.Addr, owner engine.DialOwner) error {
	d := &udial{owner: owner, raddr: raddr, fd: -1, slot: noSlot}
	fd, salen, err := sockopt.DialSocket(raddr, &d.sa)
	if err != nil {
		return err
	}
	d.fd, d.salen = fd, salen
	e := b.rings[int(b.nextDial.Add(1)-1)%len(b.rings)]
	e.post(ureq{op: rqDial, x: d}, true)
	return nil
}

// startDial submits d's connect, on the loop. The udial is pinned until
// its CQE: the kernel reads the address from it (it copies it when it
// takes the request, in the kernels of today, but io_uring does not
// promise that for every opcode, so the engine holds it to the end).
func (e *ringEngine) startDial(d *udial) {
	if e.stopping {
		// Cannot happen: package cport does not dial while the engine
		// closes. Should it, the dial ends as one in progress would.
		e.closeFD(d.fd)
		d.owner.Failed(engine.ErrCanceled)
		return
	}
	if n := len(e.freeDial); n > 0 {
		d.slot = e.freeDial[n-1]
		e.freeDial = e.freeDial[:n-1]
		e.dials[d.slot] = d
	} else {
		d.slot = uint32(len(e.dials))
		e.dials = append(e.dials, d)
	}
	d.pin.Pin(d)
	s := e.sqe()
	s.PrepConnect(d.fd, &d.sa, d.salen)
	s.UserData = udata(ukConnect, 0, d.slot)
	e.inflight++
}

// connectDone finishes the dial in slot with its CQE: a connection in this
// ring, or the connect's error.
func (e *ringEngine) connectDone(slot uint32, cqe *uring.CQE) {
	if int(slot) >= len(e.dials) || e.dials[slot] == nil {
		return // cannot happen: a slot is freed at its CQE only
	}
	d := e.dials[slot]
	e.dials[slot] = nil
	e.freeDial = append(e.freeDial, slot)
	e.inflight--
	d.pin.Unpin() // the kernel's last word on d.sa
	if cqe.Res < 0 {
		e.closeFD(d.fd)
		errno := unix.Errno(-cqe.Res)
		if errno == unix.ECANCELED {
			d.owner.Failed(engine.ErrCanceled) // the engine is closing (stop), or CancelDial
			return
		}
		d.owner.Failed(os.NewSyscallError("connect", errno))
		return
	}
	u := &uconn{e: e, fd: int32(d.fd), slot: noSlot}
	var laddr net.Addr
	if sa, err := unix.Getsockname(d.fd); err == nil {
		laddr = sockopt.SockAddr(sa)
	}
	// In u before anyone can see it: a port closing closes it in
	// Connected, a request this loop handles before it ends.
	u.c = d.owner.NewConn(u, laddr, d.raddr)
	d.owner.Connected(u.c)
}

// CancelDial asks every ring to cancel owner's connect: only the ring that
// took the dial has it.
func (b *portEngine) CancelDial(owner engine.DialOwner) {
	for _, e := range b.rings {
		e.post(ureq{op: rqCancelDial, x: owner}, true)
	}
}

// cancelDial cancels owner's connect if it is in the kernel, on the loop:
// its CQE then comes with -ECANCELED, unless it was done already. (The
// dial's rqDial, posted to this ring before, has been handled.)
func (e *ringEngine) cancelDial(owner engine.DialOwner) {
	for _, d := range e.dials {
		if d != nil && d.owner == owner {
			s := e.sqe()
			s.PrepCancel(udata(ukConnect, 0, d.slot), 0)
			s.UserData = udata(ukCancelDial, 0, 0)
			e.inflight++
			return
		}
	}
}

// cancelDials cancels the connects in the kernel, on the loop, as it
// stops: each then completes with -ECANCELED, unless it was done already.
func (e *ringEngine) cancelDials() {
	for _, d := range e.dials {
		if d == nil {
			continue
		}
		s := e.sqe()
		s.PrepCancel(udata(ukConnect, 0, d.slot), 0)
		s.UserData = udata(ukCancelDial, 0, 0)
		e.inflight++
	}
}
