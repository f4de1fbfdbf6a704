package cport

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// The uring engine's listeners: see backend_uring_linux.go. A port's
// listeners live in its first ring, whose loop accepts for every ring.

// listenBacklog asks for a long accept queue; the kernel caps it at
// net.core.somaxconn.
const listenBacklog = 4096

// ulistener is the engine's state of one listener, in Listener.sys; the
// first ring's loop owns the fields marked "loop".
type ulistener struct {
	l        *Listener
	fd       int
	slot     uint32
	pending  int            // loop: accepts in the kernel
	closing  bool           // loop
	cancelOn bool           // loop
	timerOn  bool           // loop: backing off after EMFILE and the like
	pause    time.Duration  // loop: the current back-off
	ts       uring.Timespec // the back-off timeout's argument, read by the kernel
	acc      [acceptDepth]acceptOp
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

func (e *uringEngine) listen(l *Listener, network, address string) error {
	fd, addr, err := listenTCP("uring", network, address, listenBacklog)
	if err != nil {
		return err
	}
	// Accepted sockets inherit TCP_NODELAY from the listener.
	sockopt.SetNoDelay(fd)
	l.addr = addr
	ul := &ulistener{l: l, fd: fd}
	l.sys = ul
	// Listeners take a slot when the loop first sees them (armAccept).
	ul.slot = noSlot
	return nil
}

func (e *uringEngine) listenerSlot(ul *ulistener) uint32 {
	if ul.slot == noSlot {
		ul.slot = uint32(len(e.lns))
		e.lns = append(e.lns, ul)
	}
	return ul.slot
}

func (e *uringEngine) armAccept(ul *ulistener) {
	if ul.timerOn || ul.closing {
		return
	}
	l := ul.l
	l.mu.Lock()
	want, multi := l.accepting, l.multi
	l.mu.Unlock()
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
		a.salen = uint32(unsafe.Sizeof(a.sa))
		s := e.sqe()
		s.PrepAcceptAddr(ul.fd, &a.sa, &a.salen, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		s.UserData = udata(ukAccept, uint32(i), e.listenerSlot(ul))
		a.on = true
		ul.pending++
		e.inflight++
	}
}

func (e *uringEngine) acceptDone(ul *ulistener, i uint32, cqe *uring.CQE) {
	a := &ul.acc[i]
	a.on = false
	ul.pending--
	e.inflight--
	l := ul.l
	if cqe.Res >= 0 {
		ul.pause = 0
		// Accepted before the listener's close took effect: delivered,
		// as a connection accepted just before Close would be.
		t := e.b.rings[e.b.next]
		e.b.next = (e.b.next + 1) % len(e.b.rings)
		u := newUconn(t, int(cqe.Res), rawTCPAddr(&a.sa))
		if l.accepted(u.c) {
			e.armAccept(ul)
		} else if ul.pending > 0 {
			e.cancelAccept(ul) // a single accept was asked, or the port is closing
		}
		return
	}
	errno := unix.Errno(-cqe.Res)
	if ul.closing || errno == unix.ECANCELED {
		if ul.pending == 0 {
			l.acceptFailed(ErrCanceled, true)
		}
		return
	}
	if ul.timerOn {
		return // the shortage is reported, and the timer re-arms
	}
	goOn := l.acceptFailed(&OpError{Op: "accept", Backend: "uring", Addr: l.addr, Err: os.NewSyscallError("accept4", errno)}, false)
	if !goOn {
		if ul.pending > 0 {
			e.cancelAccept(ul)
		}
		return
	}
	switch errno {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		// Out of descriptors or memory: pause rather than spin, then
		// accept again (connections freed meanwhile make room).
		ul.pause = nextAcceptPause(ul.pause)
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

func (e *uringEngine) cancelAccept(ul *ulistener) {
	if ul.cancelOn {
		return
	}
	s := e.sqe()
	s.PrepCancelFD(ul.fd, uring.IORING_ASYNC_CANCEL_ALL)
	s.UserData = udata(ukCancelListener, 0, ul.slot)
	ul.cancelOn = true
	e.inflight++
}

func (e *uringEngine) closeListenerLoop(ul *ulistener) {
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

func (e *uringEngine) finishListenerIfQuiet(ul *ulistener) {
	if !ul.closing || ul.pending > 0 || ul.timerOn || ul.cancelOn || ul.fd < 0 {
		return
	}
	unix.Close(ul.fd)
	ul.fd = -1
	ul.l.mu.Lock()
	armed := ul.l.accepting
	ul.l.mu.Unlock()
	if armed {
		ul.l.acceptFailed(ErrCanceled, true)
	}
}
