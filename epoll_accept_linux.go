package cport

import (
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

// The epoll engine's listeners and accepts: see backend_epoll_linux.go.

func (be *epollBackend) listen(l *Listener, network, address string) error {
	fd, bound, err := listenTCP("epoll", network, address, epollBacklog)
	if err != nil {
		return err
	}
	el := &epollListener{l: l, fd: int32(fd), gen: be.newGen(true), addr: bound, done: make(chan struct{})}
	if !bound.IP.IsUnspecified() {
		el.local = bound
	}
	el.st = elReadable // a first accept4 finds out
	if err := be.registerListener(el); err != nil {
		unix.Close(fd)
		return &OpError{Op: "listen", Backend: "epoll", Addr: bound, Err: err}
	}
	l.sys, l.addr = el, bound
	return nil
}

func (be *epollBackend) registerListener(el *epollListener) error {
	be.mu.RLock()
	defer be.mu.RUnlock()
	if be.closed {
		return ErrClosed
	}
	be.lnMu.Lock()
	be.lns[el.fd] = el
	be.lnMu.Unlock()
	pl := be.pollers[be.next.Add(1)%uint32(len(be.pollers))]
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: el.fd, Pad: int32(el.gen)}
	if err := unix.EpollCtl(pl.epfd, unix.EPOLL_CTL_ADD, int(el.fd), &ev); err != nil {
		be.lnMu.Lock()
		delete(be.lns, el.fd)
		be.lnMu.Unlock()
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (be *epollBackend) listenerEvent(fd int32, gen uint32) {
	be.lnMu.Lock()
	el := be.lns[fd]
	be.lnMu.Unlock()
	if el == nil || el.gen != gen {
		return
	}
	be.kickAccept(el, elReadable)
}

func (be *epollBackend) accept(l *Listener) error {
	be.kickAccept(l.sys.(*epollListener), elWant)
	return nil
}

// kickAccept sets flags on el's accept side, then runs acceptLoop unless
// another goroutine does (which then looks again).
func (be *epollBackend) kickAccept(el *epollListener, set elState) {
	el.mu.Lock()
	el.st |= set
	if el.st&elRunning != 0 {
		el.st |= elAgain
		el.mu.Unlock()
		return
	}
	el.st |= elRunning
	el.mu.Unlock()
	be.acceptLoop(el)
}

// acceptLoop runs the accept side of el, which the caller took
// (elRunning), and lets go of it when nothing is left to do.
func (be *epollBackend) acceptLoop(el *epollListener) {
	l := el.l
	for {
		el.mu.Lock()
		st := el.st
		switch {
		case st&elClosed != 0 && st&elWant != 0:
			el.st &^= elWant
			el.mu.Unlock()
			l.acceptFailed(ErrCanceled, true)
			continue
		case st&elClosed == 0 && st&(elWant|elReadable|elPaused) == elWant|elReadable:
			el.st &^= elAgain
			el.mu.Unlock()
			be.acceptOnce(el)
			continue
		case st&elAgain != 0:
			el.st &^= elAgain
			el.mu.Unlock()
			continue
		}
		el.st &^= elRunning
		closeFD := st&(elClosed|elFdClosed) == elClosed
		if closeFD {
			el.st |= elFdClosed
		}
		el.mu.Unlock()
		if closeFD {
			be.lnMu.Lock()
			delete(be.lns, el.fd)
			be.lnMu.Unlock()
			unix.Close(int(el.fd))
			close(el.done)
		}
		return
	}
}

// acceptOnce accepts one connection, or handles why it could not.
func (be *epollBackend) acceptOnce(el *epollListener) {
	l := el.l
	nfd, sa, err := unix.Accept4(int(el.fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	switch err {
	case nil:
		c, err := be.newConn(el, nfd, sa)
		if errors.Is(err, ErrClosed) {
			be.acceptError(el, err, true)
			return
		}
		if err != nil { // epoll_ctl: ENOMEM, ENOSPC (max_user_watches)
			be.acceptPause(el, err, false)
			return
		}
		el.mu.Lock()
		el.st &^= elReported
		el.pause = 0
		el.mu.Unlock()
		if !l.accepted(c) {
			el.mu.Lock()
			el.st &^= elWant
			el.mu.Unlock()
		}
	case unix.EAGAIN:
		el.mu.Lock()
		if el.st&elAgain == 0 {
			el.st &^= elReadable
		}
		el.mu.Unlock()
	case unix.EINTR, unix.ECONNABORTED:
		// Try again: the peer gave up while queued, nothing to report.
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		be.acceptPause(el, os.NewSyscallError("accept4", err), true)
	case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EOPNOTSUPP:
		be.acceptError(el, os.NewSyscallError("accept4", err), true) // the listener is broken
	default: // EPERM (a firewall), EPROTO: report and go on after a pause
		be.acceptPause(el, os.NewSyscallError("accept4", err), false)
	}
}

// acceptError reports an accept failure.
func (be *epollBackend) acceptError(el *epollListener, err error, final bool) {
	if errors.Is(err, ErrClosed) {
		err = ErrCanceled
	} else {
		err = &OpError{Op: "accept", Backend: "epoll", Addr: el.addr, Err: err}
	}
	if !el.l.acceptFailed(err, final) {
		el.mu.Lock()
		el.st &^= elWant
		el.mu.Unlock()
	}
}

// acceptPause stops accepting for a while after err, reporting it unless
// shortage says it is another failure for want of descriptors (or memory)
// in an episode already reported. Accepting resumes when the backoff timer
// fires or, sooner, when a descriptor of the port is closed.
func (be *epollBackend) acceptPause(el *epollListener, err error, shortage bool) {
	el.mu.Lock()
	if el.st&elClosed != 0 {
		el.mu.Unlock()
		return
	}
	el.pause = nextAcceptPause(el.pause)
	report := !shortage || el.st&elReported == 0
	if shortage {
		el.st |= elReported
	}
	if el.st&elPaused == 0 {
		el.st |= elPaused
		be.paused.Add(1)
	}
	if el.timer == nil {
		el.timer = time.AfterFunc(el.pause, func() { be.resumeTimer(el) })
	} else {
		el.timer.Reset(el.pause)
	}
	el.mu.Unlock()
	if report {
		be.acceptError(el, err, false)
	}
}

func (be *epollBackend) resumeTimer(el *epollListener) {
	if !be.enter() {
		return
	}
	defer be.wg.Done()
	be.resumeAccept(el)
}

// resumeAccept ends el's pause and tries accept4 again: an edge-triggered
// set will not report connections that were already pending.
func (be *epollBackend) resumeAccept(el *epollListener) {
	el.mu.Lock()
	if el.st&elPaused == 0 {
		el.mu.Unlock()
		return
	}
	el.st &^= elPaused
	be.paused.Add(-1)
	el.mu.Unlock()
	be.kickAccept(el, elReadable)
}

// resumeAccepts resumes the listeners paused for want of descriptors, one
// having just been freed.
func (be *epollBackend) resumeAccepts() {
	var paused []*epollListener
	be.lnMu.Lock()
	for _, el := range be.lns {
		el.mu.Lock()
		if el.st&elPaused != 0 {
			paused = append(paused, el)
		}
		el.mu.Unlock()
	}
	be.lnMu.Unlock()
	for _, el := range paused {
		be.resumeAccept(el)
	}
}

// epollNetAddr returns a as a net.Addr, nil if a is.
func epollNetAddr(a *net.TCPAddr) net.Addr {
	if a == nil {
		return nil
	}
	return a
}

// newConn sets up an accepted socket and registers it.
func (be *epollBackend) newConn(el *epollListener, nfd int, sa unix.Sockaddr) (*Conn, error) {
	sockopt.SetNoDelay(nfd) // as Go's net does; a failure only costs latency
	laddr := el.local
	if laddr == nil {
		if a, err := sockopt.LocalAddr(nfd); err == nil {
			if !sockopt.SameAddr(a, el.lastLocal) {
				el.lastLocal = a
			}
			laddr = el.lastLocal
		}
	}
	ec := &epollConn{fd: int32(nfd), gen: be.newGen(false)}
	c := newConn(be.p, ec, epollNetAddr(laddr), epollNetAddr(sockopt.TCPAddr(sa)))
	ec.c = c
	if err := be.register(ec); err != nil {
		unix.Close(nfd)
		return nil, err
	}
	return c, nil
}

func (be *epollBackend) closeListener(l *Listener) {
	el := l.sys.(*epollListener)
	el.mu.Lock()
	if el.st&elClosed == 0 {
		el.st |= elClosed
		if el.timer != nil {
			el.timer.Stop()
		}
		if el.st&elPaused != 0 {
			el.st &^= elPaused
			be.paused.Add(-1)
		}
	}
	el.mu.Unlock()
	be.kickAccept(el, 0)
	<-el.done // closed by whoever runs the accept side, soon: it never blocks
}
