package uring

import (
	"net"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// The uring engine's listeners. A port's listeners live in its first ring,
// whose loop accepts for every ring.

// listenBacklog asks for a long accept queue; the kernel caps it at
// net.core.somaxconn.
const listenBacklog = 4096

// ulistener is the engine's state of one listener: its engine.Listener. The
// first ring's loop owns the fields marked "loop".
type ulistener struct {
	owner    engine.ListenerOwner
	e        *ringEngine // the first ring
	addr     net.Addr    // a *net.TCPAddr, or a *net.UnixAddr for an adopted Unix listener
	fd       int
	slot     uint32
	pending  int            // loop: accepts in the kernel
	closing  bool           // loop
	cancelOn bool           // loop
	timerOn  bool           // loop: backing off after EMFILE and the like
	pause    time.Duration  // loop: the current back-off
	pin      runtime.Pinner // loop: the ulistener, from its slot until its socket is closed
	ts       uring.Timespec // the back-off timeout's argument, read by the kernel
	acc      [acceptDepth]acceptOp
	// local is the local address of every socket accepted, the
	// listener's own when it is not a wildcard (nil: each socket's is
	// asked for); lastLocal is the last one asked for, which the sockets
	// that have it share. Loop.
	local, lastLocal *net.TCPAddr
	// peer holds the address of the peer of the socket accepted last,
	// which NewConn copies (engine.ListenerOwner): no garbage per accept.
	// Loop.
	peer sockopt.AddrBuf
}

// acceptDepth is how many accepts a listener keeps in the kernel while
// accepting continuously. They are single-shot, each with an address buffer
// of its own: a multishot accept has one buffer for every connection, and
// getpeername fails on a peer that reset before its accept was reaped, so
// that the server could not name the client it logs.
const acceptDepth = 8

// acceptOp is the memory an accept hands the kernel: the peer's address.
type acceptOp struct {
	sa    unix.RawSockaddrAny
	salen uint32
	on    bool // loop: in the kernel
}

func (e *ringEngine) listen(network, address string, owner engine.ListenerOwner) (*ulistener, error) {
	fd, addr, err := sockopt.Listen(network, address, listenBacklog)
	if err != nil {
		return nil, err
	}
	// Accepted sockets inherit TCP_NODELAY from the listener.
	sockopt.SetNoDelay(fd)
	// Listeners take a slot when the loop first sees them (armAccept).
	ul := &ulistener{owner: owner, e: e, addr: addr, fd: fd, slot: noSlot}
	if !addr.IP.IsUnspecified() {
		ul.local = addr // every accepted socket's: no getsockname(2) each
	}
	return ul, nil
}

// localAddr returns the local address of fd, a socket ul accepted; nil if
// it cannot be had. A wildcard listener's sockets share the last one found,
// so that an idle connection holds no copy of its own.
func (ul *ulistener) localAddr(fd int) *net.TCPAddr {
	if ul.local != nil {
		return ul.local
	}
	a, err := sockopt.LocalAddr(fd)
	if err != nil || a == nil {
		return nil
	}
	if !sockopt.SameAddr(a, ul.lastLocal) {
		ul.lastLocal = a
	}
	return ul.lastLocal
}

// The engine.Listener.

func (ul *ulistener) Addr() net.Addr { return ul.addr }

func (ul *ulistener) Accept() { ul.e.post(ureq{op: rqAccept, x: ul}, true) }

func (ul *ulistener) Close() { ul.e.post(ureq{op: rqCloseListener, x: ul}, true) }

// listenerSlot gives ul a slot in the loop's table, the first time, and
// pins it: the kernel writes the peers' addresses into it and reads the
// back-off's timespec from it.
func (e *ringEngine) listenerSlot(ul *ulistener) uint32 {
	if ul.slot == noSlot {
		ul.slot = uint32(len(e.lns))
		e.lns = append(e.lns, ul)
		ul.pin.Pin(ul)
	}
	return ul.slot
}

func (e *ringEngine) armAccept(ul *ulistener) {
	if ul.timerOn || ul.closing {
		return
	}
	want, multi := ul.owner.AcceptState()
	depth := 1
	if multi {
		depth = acceptDepth
	}
	for i := range ul.acc[:depth] {
		a := &ul.acc[i]
		if !want || ul.pending >= depth {
			return
		}
		if a.on {
			continue
		}
		slot := e.listenerSlot(ul)
		a.salen = uint32(unsafe.Sizeof(a.sa))
		s := e.sqe()
		s.PrepAcceptAddr(ul.fd, &a.sa, &a.salen, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		s.UserData = udata(ukAccept, uint32(i), slot)
		a.on = true
		ul.pending++
		e.inflight++
	}
}

func (e *ringEngine) acceptDone(ul *ulistener, i uint32, cqe *uring.CQE) {
	a := &ul.acc[i]
	a.on = false
	ul.pending--
	e.inflight--
	res := cqe.Res
	if f := e.b.cfg.Faults; f != nil && !ul.closing && res != -int32(unix.ECANCELED) {
		if errno := f.Fail(engine.CallAccept); errno != 0 {
			if res >= 0 {
				e.closeFD(int(res)) // the kernel had accepted: undone
			}
			res = -int32(errno)
		}
	}
	if res >= 0 {
		ul.pause = 0
		// Accepted before the listener's close took effect: delivered,
		// as a connection accepted just before Close would be.
		t := e.b.rings[e.b.next]
		e.b.next = (e.b.next + 1) % len(e.b.rings)
		u := newUconn(t, int(res), ul.localAddr(int(res)), sockopt.RawTCPAddrIn(&a.sa, &ul.peer), ul.owner)
		if ul.owner.Accepted(u.c) {
			e.armAccept(ul)
		} else if ul.pending > 0 {
			e.cancelAccept(ul) // a single accept was asked, or the port is closing
		}
		return
	}
	errno := unix.Errno(-res)
	if ul.closing || errno == unix.ECANCELED {
		if ul.pending == 0 {
			ul.owner.AcceptFailed(engine.ErrCanceled, true)
		}
		return
	}
	if errno == unix.EAGAIN || sockopt.AcceptSkippable(errno) {
		// Interrupted, or that connection is gone: nothing to report, the
		// next one is accepted.
		e.armAccept(ul)
		return
	}
	if ul.timerOn {
		return // the shortage is reported, and the timer re-arms
	}
	if !ul.owner.AcceptFailed(os.NewSyscallError("accept4", errno), false) {
		if ul.pending > 0 {
			e.cancelAccept(ul)
		}
		return
	}
	switch errno {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		// Out of descriptors or memory: pause rather than spin, then
		// accept again (connections freed meanwhile make room).
		ul.pause = engine.NextAcceptPause(ul.pause)
		ul.ts = uring.Timespec{Sec: int64(ul.pause / time.Second), Nsec: int64(ul.pause % time.Second)}
		s := e.sqe()
		s.PrepTimeout(&ul.ts, 0, 0)
		s.UserData = udata(ukTimer, 0, ul.slot)
		ul.timerOn = true
		e.inflight++
	default:
		e.armAccept(ul)
	}
}

func (e *ringEngine) cancelAccept(ul *ulistener) {
	if ul.cancelOn {
		return
	}
	s := e.sqe()
	s.PrepCancelFD(ul.fd, uring.IORING_ASYNC_CANCEL_ALL)
	s.UserData = udata(ukCancelListener, 0, ul.slot)
	ul.cancelOn = true
	e.inflight++
}

func (e *ringEngine) closeListenerLoop(ul *ulistener) {
	if ul.closing {
		return
	}
	ul.closing = true
	if ul.pending > 0 {
		e.cancelAccept(ul)
	}
	if ul.timerOn {
		s := e.sqe()
		s.PrepCancel(udata(ukTimer, 0, ul.slot), 0)
		s.UserData = udata(ukCancelListener, 0, ul.slot)
		e.inflight++ // the cancel's own CQE; the timer's comes too
		ul.cancelOn = true
	}
	e.finishListenerIfQuiet(ul)
}

func (e *ringEngine) finishListenerIfQuiet(ul *ulistener) {
	if !ul.closing || ul.pending > 0 || ul.timerOn || ul.cancelOn || ul.fd < 0 {
		return
	}
	e.closeFD(ul.fd)
	ul.fd = -1
	ul.pin.Unpin() // the kernel has had its last word
	if want, _ := ul.owner.AcceptState(); want {
		ul.owner.AcceptFailed(engine.ErrCanceled, true)
	}
}
