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
	if u.flags.has(fRecvOn | fClosing) {
		return
	}
	st := u.c.RecvState()
	if !st.Armed || st.Closed {
		return
	}
	if err := e.recvErrs[u]; err != nil {
		u.c.Deliver(nil, 0, err) // ended by a failure (endRecv)
		return
	}
	if u.flags.has(fBroken) {
		// A send failed before the receive was armed: there is nothing
		// to read, and the receive ends at once with the send's error.
		u.c.Deliver(nil, 0, io.EOF)
		return
	}
	s := e.sqe()
	if st.Multi {
		s.PrepRecvMultishot(int(u.fd), e.bufs.Group(), 0)
	} else {
		s.PrepRecvSelect(int(u.fd), e.bufs.Group(), 0)
	}
	s.UserData = udata(ukRecv, u.gen, u.slot)
	u.flags.set(fRecvOn)
	e.inflight++
}

func (e *ringEngine) recvDone(u *uconn, cqe *uring.CQE) {
	more := cqe.Flags&uring.IORING_CQE_F_MORE != 0
	if !more {
		u.flags.clear(fRecvOn)
		e.inflight--
	}
	res := cqe.Res
	if !more && u.flags.has(fRecvStop) {
		// The last CQE of a receive stopped for a full owner (stopRecv).
		u.flags.clear(fRecvStop)
		if res == -int32(unix.ECANCELED) && !u.flags.has(fRecvDrop) {
			// Not an end for the owner: its Recv starts the receive
			// again, or has already, while this one was in the kernel.
			if !u.c.RecvState().Full {
				e.armRecv(u)
			}
			return
		}
	}
	if u.flags.has(fRecvDrop) {
		// Its end is the owner's already (dropRecv): what it brings is
		// nobody's. At its last CQE, a receive the owner armed meanwhile
		// goes in.
		if res > 0 {
			e.recycle(cqe)
		}
		if !more {
			u.flags.clear(fRecvDrop)
			e.armRecv(u)
		}
		return
	}
	injected := false
	if f := e.b.cfg.Faults; f != nil && !u.flags.has(fClosing) && res != -int32(unix.ECANCELED) {
		if errno := f.Fail(engine.CallRecv); errno != 0 && !(res > 0 && interrupted(errno)) {
			// (An interrupted call that read data stands for one the
			// kernel made again: the data is delivered.) Else the
			// buffer the kernel filled goes back to the ring, and the
			// receive fails.
			if res > 0 {
				e.recycle(cqe)
			}
			res, injected = -int32(errno), true
		}
	}
	var goOn bool
	switch {
	case res > 0 && u.flags.has(fClosing):
		// Arrived after Close: nobody wants it.
		e.recycle(cqe)
		return
	case res > 0:
		b := &e.rbufs[cqe.Flags>>uring.IORING_CQE_BUFFER_SHIFT]
		e.lend()
		goOn = u.c.Deliver(b, int(res), nil)
	case res == 0:
		u.c.Deliver(nil, 0, endOfStream(u))
		return
	case unix.Errno(-res) == unix.ENOBUFS:
		// Every buffer is out: wait until some come back.
		if !u.flags.has(fStarving) {
			u.flags.set(fStarving)
			e.b.starved.Add(1)
			e.starved = append(e.starved, u)
			e.hungry.Store(true)
		}
		return
	case interrupted(unix.Errno(-res)):
		// Receive again; a multishot receive that goes on does by itself.
		if !more {
			e.armRecv(u)
		}
		return
	default:
		u.c.Deliver(nil, 0, os.NewSyscallError("recv", unix.Errno(-res)))
		if injected && more {
			// A failed receive ends; the kernel's multishot one went on.
			e.dropRecv(u)
		}
		return
	}
	switch {
	case !more && goOn:
		e.armRecv(u)
	case more && !goOn && u.c.RecvState().Full:
		e.stopRecv(u)
	}
}

// stopRecv cancels u's multishot receive, whose owner holds all it may
// (RecvState.Full): the kernel would go on filling the port's shared
// buffers for a connection nobody reads from. What the receive brings
// until its last CQE is still delivered; the owner's Recv, once it has
// room, starts a receive again.
func (e *ringEngine) stopRecv(u *uconn) {
	if !u.flags.has(fRecvOn) || u.flags.has(fRecvDrop|fRecvStop) {
		return
	}
	u.flags.set(fRecvStop)
	e.cancelRecv(u, fRecvStop)
}

// cancelRecv submits the cancel of u's receive in the kernel, whose reason
// is the flag why (fRecvDrop or fRecvStop, just set). A reap inside sqe
// that takes the receive's last CQE clears why (and may arm a new receive,
// which stays): the entry is then spent on nothing.
func (e *ringEngine) cancelRecv(u *uconn, why uconnFlags) {
	s := e.sqe()
	if !u.flags.has(why) {
		s.PrepNop()
		s.UserData = 0
		return
	}
	s.PrepCancel(udata(ukRecv, u.gen, u.slot), 0)
	s.UserData = udata(ukCancelRecv, u.gen, u.slot)
	u.flags.set(fDropOn)
	e.inflight++
}

// recycle gives the buffer a receive's CQE names back to the ring, unseen.
func (e *ringEngine) recycle(cqe *uring.CQE) {
	e.bufMu.Lock()
	e.bufs.Recycle(uint16(cqe.Flags >> uring.IORING_CQE_BUFFER_SHIFT))
	e.bufMu.Unlock()
}

// endRecv ends u's receive with err, at once, as a failed recv would: the
// owner gets err, now if a receive is armed, else when one is. A failure of
// the connection's other calls ends it so (a shutdown that fails, a send's
// failure when the socket cannot be shut down), that the owner learns of it
// and closes the connection.
func (e *ringEngine) endRecv(u *uconn, err error) {
	if !u.flags.has(fClosing) { // a closing connection arms no receive; finishIfQuiet forgets it
		if e.recvErrs == nil {
			e.recvErrs = make(map[*uconn]error)
		}
		e.recvErrs[u] = err
	}
	if u.c.RecvState().Armed {
		u.c.Deliver(nil, 0, err)
	}
	e.dropRecv(u)
}

// dropRecv cancels the receive u has in the kernel, if any, whose end the
// owner already has: until its last CQE, what it brings is dropped, its
// buffers going back to the ring. Called after the owner is told, so that
// the cancel's CQE, or a last CQE that a reap in sqe handles, finds the
// owner's receive ended (or armed anew, which armRecv then takes up).
func (e *ringEngine) dropRecv(u *uconn) {
	if !u.flags.has(fRecvOn) || u.flags.has(fRecvDrop) {
		return
	}
	u.flags.set(fRecvDrop)
	if u.flags.has(fRecvStop) {
		return // canceled already: what comes until the last CQE is dropped
	}
	e.cancelRecv(u, fRecvDrop)
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
	if u.flags.has(fShutDone) {
		return io.EOF
	}
	return sockopt.EOFOrReset(int(u.fd))
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
		u.flags.clear(fStarving)
		e.armRecv(u)
	}
	e.feedStarvedPackets()
}

// lend counts a ring buffer lent to an owner with a delivery, until it is
// given back.
func (e *ringEngine) lend() {
	e.bufMu.Lock()
	e.lent++
	e.bufMu.Unlock()
}
