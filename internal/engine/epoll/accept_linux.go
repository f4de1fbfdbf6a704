package epoll

import (
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The epoll engine's listeners and accepts: see doc.go.

// Listen opens a listening socket whose accepts report to owner.
func (e *Engine) Listen(network, address string, owner engine.ListenerOwner) (engine.Listener, error) {
	fd, bound, err := sockopt.Listen(network, address, backlog)
	if err != nil {
		return nil, err
	}
	el := &listener{owner: owner, e: e, fd: int32(fd), gen: e.newGen(true), addr: bound, done: make(chan struct{})}
	if !bound.IP.IsUnspecified() {
		el.local = bound
	}
	el.st = elReadable // a first accept4 finds out
	if err := e.registerListener(el); err != nil {
		e.closeSocket(int32(fd))
		return nil, err
	}
	return el, nil
}

func (e *Engine) registerListener(el *listener) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return net.ErrClosed
	}
	e.lnMu.Lock()
	e.lns[el.fd] = el
	e.lnMu.Unlock()
	pl := e.pollers[e.next.Add(1)%uint32(len(e.pollers))]
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: el.fd, Pad: int32(el.gen)}
	if err := e.epollAdd(pl.epfd, el.fd, &ev); err != nil {
		e.lnMu.Lock()
		delete(e.lns, el.fd)
		e.lnMu.Unlock()
		return err
	}
	return nil
}

func (e *Engine) listenerEvent(fd int32, gen uint32) {
	e.lnMu.Lock()
	el := e.lns[fd]
	e.lnMu.Unlock()
	if el == nil || el.gen != gen {
		return
	}
	e.kickAccept(el, elReadable)
}

// Addr returns the address the socket is bound to.
func (el *listener) Addr() net.Addr { return el.addr }

// Accept starts accepting; the owner's Accepted and AcceptFailed say
// whether it goes on.
func (el *listener) Accept() {
	el.mu.Lock()
	el.asks++
	el.mu.Unlock()
	el.e.kickAccept(el, elWant)
}

// kickAccept sets flags on el's accept side, then runs acceptLoop unless
// another goroutine does (which then looks again).
func (e *Engine) kickAccept(el *listener, set elState) {
	el.mu.Lock()
	el.st |= set
	if el.st&elRunning != 0 {
		el.st |= elAgain
		el.mu.Unlock()
		return
	}
	el.st |= elRunning
	el.mu.Unlock()
	e.acceptLoop(el)
}

// acceptLoop runs the accept side of el, which the caller took
// (elRunning), and lets go of it when nothing is left to do.
func (e *Engine) acceptLoop(el *listener) {
	for {
		el.mu.Lock()
		st := el.st
		switch {
		case st&elClosed != 0 && st&elWant != 0:
			el.st &^= elWant
			el.mu.Unlock()
			el.owner.AcceptFailed(engine.ErrCanceled, true)
			continue
		case st&elClosed == 0 && st&(elWant|elReadable|elPaused) == elWant|elReadable:
			el.st &^= elAgain
			el.mu.Unlock()
			e.acceptOnce(el)
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
			e.lnMu.Lock()
			delete(e.lns, el.fd)
			e.lnMu.Unlock()
			e.closeSocket(el.fd)
			close(el.done)
		}
		return
	}
}

// acceptOnce accepts one connection, or handles why it could not.
func (e *Engine) acceptOnce(el *listener) {
	nfd, sa, injected, err := e.accept4(el.fd)
	switch err {
	case nil:
		el.skips = 0
		c, err := e.newConn(el, nfd, sa)
		switch {
		case err == engine.ErrCanceled: // the engine is closed
			e.acceptError(el, err, true)
			return
		case errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOSPC):
			// epoll_ctl out of kernel memory or of epoll watches
			// (fs.epoll.max_user_watches): a shortage, like EMFILE.
			e.acceptPause(el, err, true)
			return
		case err != nil: // the connection is closed; the next may do
			e.acceptError(el, err, false)
			return
		}
		el.mu.Lock()
		el.st &^= elReported
		el.pause = 0
		asks := el.asks
		el.mu.Unlock()
		if !el.owner.Accepted(c) {
			el.stopWant(asks)
		}
	case unix.EAGAIN:
		el.skips = 0
		if injected {
			return // no accept4 was made: connections may be pending, so acceptLoop accepts again
		}
		el.mu.Lock()
		if el.st&elAgain == 0 {
			el.st &^= elReadable
		}
		el.mu.Unlock()
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		e.acceptPause(el, os.NewSyscallError("accept4", err), true)
	case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EOPNOTSUPP:
		e.acceptError(el, os.NewSyscallError("accept4", err), true) // the listener is broken
	default:
		if !sockopt.AcceptSkippable(err) { // report and go on after a pause
			e.acceptPause(el, os.NewSyscallError("accept4", err), false)
			return
		}
		// That connection is gone (accept(2): "treat them like EAGAIN by
		// retrying"), the next may do. Nobody is told; but a run of them
		// with no connection in between is taken for a listener that fails
		// for good (a security module refusing every accept leaves the
		// connections queued), which is paused and reported rather than
		// spun on.
		if el.skips++; el.skips >= maxSkips {
			el.skips = 0
			e.acceptPause(el, os.NewSyscallError("accept4", err), true)
		}
	}
}

// maxSkips is how many accept4 failures of a single connection (see
// acceptOnce) in a row are skipped before the listener pauses.
const maxSkips = 64

// acceptError reports an accept failure: the system's error (package cport
// wraps it), or ErrCanceled.
func (e *Engine) acceptError(el *listener, err error, final bool) {
	el.mu.Lock()
	asks := el.asks
	el.mu.Unlock()
	if !el.owner.AcceptFailed(err, final) {
		el.stopWant(asks)
	}
}

// stopWant ends the accept in progress, which the owner said not to go
// on with, unless Accept started another since the report (asks, read
// before it): the owner's state already has that one, and so must el.st.
func (el *listener) stopWant(asks uint32) {
	el.mu.Lock()
	if el.asks == asks {
		el.st &^= elWant
	}
	el.mu.Unlock()
}

// acceptPause stops accepting for a while after err, reporting it unless
// shortage says it is another failure for want of descriptors (or memory)
// in an episode already reported. Accepting resumes when the backoff timer
// fires or, sooner, when a descriptor of the engine is closed.
func (e *Engine) acceptPause(el *listener, err error, shortage bool) {
	el.mu.Lock()
	if el.st&elClosed != 0 {
		el.mu.Unlock()
		return
	}
	el.pause = engine.NextAcceptPause(el.pause)
	report := !shortage || el.st&elReported == 0
	if shortage {
		el.st |= elReported
	}
	if el.st&elPaused == 0 {
		el.st |= elPaused
		e.paused.Add(1)
	}
	if el.timer == nil {
		el.timer = time.AfterFunc(el.pause, func() { e.resumeTimer(el) })
	} else {
		el.timer.Reset(el.pause)
	}
	el.mu.Unlock()
	if report {
		e.acceptError(el, err, false)
	}
}

func (e *Engine) resumeTimer(el *listener) {
	if !e.enter() {
		return
	}
	defer e.wg.Done()
	e.resumeAccept(el)
}

// resumeAccept ends el's pause and tries accept4 again: an edge-triggered
// set will not report connections that were already pending.
func (e *Engine) resumeAccept(el *listener) {
	el.mu.Lock()
	if el.st&elPaused == 0 {
		el.mu.Unlock()
		return
	}
	el.st &^= elPaused
	e.paused.Add(-1)
	el.mu.Unlock()
	e.kickAccept(el, elReadable)
}

// resumeAccepts resumes the listeners paused for want of descriptors, one
// having just been freed.
func (e *Engine) resumeAccepts() {
	var paused []*listener
	e.lnMu.Lock()
	for _, el := range e.lns {
		el.mu.Lock()
		if el.st&elPaused != 0 {
			paused = append(paused, el)
		}
		el.mu.Unlock()
	}
	e.lnMu.Unlock()
	for _, el := range paused {
		e.resumeAccept(el)
	}
}

// netAddr returns a as a net.Addr, nil if a is.
func netAddr(a *net.TCPAddr) net.Addr {
	if a == nil {
		return nil
	}
	return a
}

// newConn sets up an accepted socket, gets its owner and registers it. It
// returns engine.ErrCanceled once the engine is closed.
func (e *Engine) newConn(el *listener, nfd int, sa unix.Sockaddr) (engine.ConnOwner, error) {
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
	ec := &conn{e: e, fd: int32(nfd), gen: e.newGen(false)}
	ec.owner = el.owner.NewConn(ec, netAddr(laddr), netAddr(sockopt.TCPAddr(sa)))
	if err := e.register(ec); err != nil {
		e.closeSocket(ec.fd)
		return nil, err
	}
	return ec.owner, nil
}

// Close closes the socket once nobody is inside accept4 on it; an accept
// in progress ends with AcceptFailed(ErrCanceled, true).
func (el *listener) Close() {
	e := el.e
	el.mu.Lock()
	if el.st&elClosed == 0 {
		el.st |= elClosed
		if el.timer != nil {
			el.timer.Stop()
		}
		if el.st&elPaused != 0 {
			el.st &^= elPaused
			e.paused.Add(-1)
		}
	}
	el.mu.Unlock()
	e.kickAccept(el, 0)
	<-el.done // closed by whoever runs the accept side, soon: it never blocks
}
