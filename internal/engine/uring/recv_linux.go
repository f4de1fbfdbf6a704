package uring

import (
	"io"
	"os"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// The uring engine's receives.

// armRecv puts u's receive in the kernel, if the user armed it and the
// kernel has none of u's.
func (e *ringEngine) armRecv(u *uconn) {
	if u.recvOn || u.closing {
		return
	}
	st := u.c.RecvState()
	if !st.Armed || st.Closed {
		return
	}
	if u.broken {
		// A send failed before the receive was armed: there is nothing
		// to read, and the receive ends at once with the send's error.
		u.c.Deliver(nil, 0, io.EOF)
		return
	}
	s := e.sqe()
	if st.Multi {
		s.PrepRecvMultishot(u.fd, e.bufs.Group(), 0)
	} else {
		s.PrepRecvSelect(u.fd, e.bufs.Group(), 0)
	}
	s.UserData = udata(ukRecv, u.gen, u.slot)
	u.recvOn, u.multi = true, st.Multi
	e.inflight++
}

func (e *ringEngine) recvDone(u *uconn, cqe *uring.CQE) {
	more := cqe.Flags&uring.IORING_CQE_F_MORE != 0
	if !more {
		u.recvOn = false
		e.inflight--
	}
	var goOn bool
	switch res := cqe.Res; {
	case res > 0 && u.closing:
		// Arrived after Close: nobody wants it.
		e.bufMu.Lock()
		e.bufs.Recycle(uint16(cqe.Flags >> uring.IORING_CQE_BUFFER_SHIFT))
		e.bufMu.Unlock()
		return
	case res > 0:
		b := &e.rbufs[cqe.Flags>>uring.IORING_CQE_BUFFER_SHIFT]
		e.bufMu.Lock()
		e.lent++
		e.bufMu.Unlock()
		goOn = u.c.Deliver(b, int(res), nil)
	case res == 0:
		u.c.Deliver(nil, 0, endOfStream(u))
		return
	case unix.Errno(-res) == unix.ENOBUFS:
		// Every buffer is out: wait until some come back.
		if !u.starving {
			u.starving = true
			e.starved = append(e.starved, u)
			e.hungry.Store(true)
		}
		return
	default:
		u.c.Deliver(nil, 0, os.NewSyscallError("recv", unix.Errno(-res)))
		return
	}
	if !more && goOn {
		e.armRecv(u)
	}
}

// endOfStream is the error of a receive that read an end of stream: io.EOF,
// or a reset whose error a send took (sockopt.EOFOrReset). Once u's writing
// side is shut down (Shutdown), the socket is closed (TCP_CLOSE) after a
// graceful end too: the peer's FIN that follows ours moves the connection
// to a TIME-WAIT socket of the kernel's own, and sockopt.EOFOrReset would
// take it for a reset. No send comes after a shutdown to take a reset's
// error from the receive, which then reports it itself: the end of stream
// is the peer's FIN.
func endOfStream(u *uconn) error {
	if u.shutDone {
		return io.EOF
	}
	return sockopt.EOFOrReset(u.fd)
}

// recvReleased takes back a buffer the user released.
func (e *ringEngine) recvReleased(b *engine.Buf) {
	e.bufMu.Lock()
	e.lent--
	switch {
	case !e.bufsClosed:
		e.bufs.Recycle(uint16(b.ID))
	case e.lent == 0:
		e.unmapSlab()
	}
	e.bufMu.Unlock()
	if e.hungry.CompareAndSwap(true, false) {
		e.post(ureq{op: rqFeed}, true)
	}
}

// unmapSlab frees the buffers' memory; under bufMu, once nothing uses it.
func (e *ringEngine) unmapSlab() {
	if e.slab != nil {
		unix.Munmap(e.slab)
		e.slab = nil
	}
}

func (e *ringEngine) feedStarved() {
	list := e.starved
	e.starved = e.starved[:0]
	for _, u := range list {
		u.starving = false
		e.armRecv(u)
	}
}
