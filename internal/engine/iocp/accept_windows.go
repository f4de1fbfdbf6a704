package iocp

import (
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// Listen opens a listening TCP socket, bound as net.Listen would bind it,
// whose accepts report to owner.
func (e *eng) Listen(network, address string, owner engine.ListenerOwner) (engine.Listener, error) {
	e.mu.Lock()
	stopping := e.stopping
	e.mu.Unlock()
	if stopping {
		return nil, engine.ErrClosed
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, net.UnknownNetworkError(network)
	}
	ta, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return nil, err
	}
	h, family, err := e.boundSocket(network, ta.IP, ta.Port, ta.Zone, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		return nil, err
	}
	if err := windows.Listen(h, windows.SOMAXCONN); err != nil {
		e.closesocket(h)
		return nil, sockopt.WinError("listen", err)
	}
	s := &sock{ln: owner, family: family}
	s.laddr, _ = sockAddrs(h)
	if err := e.register(s, h); err != nil {
		e.closesocket(h)
		return nil, sockopt.WinError("CreateIoCompletionPort", err)
	}
	return (*listener)(s), nil
}

// Addr returns the address the socket is bound to.
func (l *listener) Addr() net.Addr { return l.laddr }

// Accept starts accepting: AcceptEx, again after each connection for as
// long as the owner says accepting goes on.
func (l *listener) Accept() {
	s := (*sock)(l)
	s.e.acceptNext(s)
}

// Close closes the socket; the accept in progress ends with ErrCanceled
// when its packet arrives.
func (l *listener) Close() {
	s := (*sock)(l)
	s.e.closeSock(s, false)
}

// acceptNext starts AcceptEx on s, and finishes the accepts that complete
// at once, until one is pending or accepting ends.
func (e *eng) acceptNext(s *sock) {
	for {
		as, err := windows.WSASocket(s.family, windows.SOCK_STREAM, windows.IPPROTO_TCP, nil, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
		if err != nil {
			// Out of sockets or memory (WSAEMFILE, WSAENOBUFS): report it and
			// try again after a pause, as AcceptMulti promises.
			e.acceptPause(s, sockopt.WinError("wsasocket", err))
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			e.closesocket(as)
			s.ln.AcceptFailed(engine.ErrCanceled, true)
			return
		}
		s.as = as
		done, err := s.startLocked(&s.aop, func(o *windows.Overlapped) error {
			return windows.AcceptEx(s.h, as, &s.abuf[0], 0, acceptAddrLen, acceptAddrLen, &s.aop.qty, o)
		})
		s.mu.Unlock()
		if !done {
			return
		}
		if !e.acceptResult(s, err) {
			return
		}
	}
}

// acceptPause reports err, an accept that failed for want of sockets or
// memory, and unless the owner stops accepting, starts AcceptEx again after
// a pause, each longer than the last (engine.NextAcceptPause) until an
// accept succeeds.
func (e *eng) acceptPause(s *sock, err error) {
	if !s.ln.AcceptFailed(err, false) {
		return
	}
	s.pause = engine.NextAcceptPause(s.pause)
	s.mu.Lock()
	closed := s.closed
	if !closed {
		// Close stops the timer, and if it had not fired, ends the accept.
		s.timer = time.AfterFunc(s.pause, func() { e.acceptNext(s) })
	}
	s.mu.Unlock()
	if closed {
		// Closed meanwhile: no timer, and no packet will end the accept.
		s.ln.AcceptFailed(engine.ErrCanceled, true)
	}
}

// acceptResult finishes an AcceptEx that ended with err, and reports
// whether to go on accepting now.
func (e *eng) acceptResult(s *sock, err error) bool {
	lo := s.ln
	s.mu.Lock()
	as, closed := s.as, s.closed
	s.as = 0
	var uerr error
	if err == nil && !closed {
		// An injected failure (CallAccept) of an accept the kernel has
		// made: the connection is closed, as if it had never come.
		err = e.fail(engine.CallAccept)
	}
	if err == nil && !closed {
		// Give the accepted socket the listener's properties; without it
		// getpeername, getsockname and shutdown fail on it (AcceptEx's
		// documentation). Under s.mu: s.h stays open meanwhile.
		lh := s.h
		uerr = windows.Setsockopt(as, windows.SOL_SOCKET, windows.SO_UPDATE_ACCEPT_CONTEXT, (*byte)(unsafe.Pointer(&lh)), int32(unsafe.Sizeof(lh)))
	}
	s.mu.Unlock()
	if err != nil {
		e.closesocket(as)
		switch {
		case closed || err == windows.ERROR_OPERATION_ABORTED:
			return lo.AcceptFailed(engine.ErrCanceled, true)
		case transientAccept(err):
			return true // that connection is gone, or the call was interrupted: go on
		case resourceAccept(err):
			e.acceptPause(s, sockopt.WinError("acceptex", err))
			return false
		}
		// Another failure (Wine says ERROR_UNEXP_NET_ERR for a client that
		// reset before AcceptEx completed): reported, and accepting goes
		// on.
		return lo.AcceptFailed(sockopt.WinError("acceptex", err), false)
	}
	if uerr != nil {
		e.closesocket(as)
		return lo.AcceptFailed(sockopt.WinError("setsockopt", uerr), false)
	}
	if err := setNonblock(as); err != nil {
		e.closesocket(as)
		return lo.AcceptFailed(sockopt.WinError("ioctlsocket", err), false)
	}
	cs := &sock{}
	if err := e.register(cs, as); err != nil {
		// The connection's client sees its stream end; accepting goes on.
		e.closesocket(as)
		return lo.AcceptFailed(sockopt.WinError("CreateIoCompletionPort", err), false)
	}
	s.pause = 0
	local, remote := acceptAddrs(&s.abuf)
	if local == nil || remote == nil {
		local, remote = sockAddrs(as)
	}
	// No operation is started on cs before Accepted hands it over, so no
	// packet can look for its owner before it is stored.
	cs.conn = lo.NewConn((*conn)(cs), local, remote)
	return lo.Accepted(cs.conn)
}

// acceptAddrs reads the addresses AcceptEx left in buf. Unlike getpeername,
// it knows the peer of a connection already reset.
func acceptAddrs(buf *[2 * acceptAddrLen]byte) (local, remote net.Addr) {
	var l, r *windows.RawSockaddrAny
	var ll, rl int32
	windows.GetAcceptExSockaddrs(&buf[0], 0, acceptAddrLen, acceptAddrLen, &l, &ll, &r, &rl)
	if l != nil {
		if sa, err := l.Sockaddr(); err == nil {
			local = sockaddrTCP(sa)
		}
	}
	if r != nil {
		if sa, err := r.Sockaddr(); err == nil {
			remote = sockaddrTCP(sa)
		}
	}
	return local, remote
}
