package iocp

import (
	"fmt"
	"net"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// dialState is what a dialing socket keeps until its ConnectEx completes:
// set before the socket is published, read-only after.
type dialState struct {
	owner engine.DialOwner
	raddr net.Addr
	// sa is the peer's address ConnectEx is handed, pinned by the
	// connect's op (sock.aop) with the sock until its packet.
	sa windows.Sockaddr
}

// Dial opens an overlapped TCP socket, binds it to the wildcard address of
// its family (ConnectEx wants a bound socket), associates it with the
// completion port and starts ConnectEx on it, with the operation a
// listener uses for AcceptEx (sock.aop). Unix sockets are refused: Winsock
// has AF_UNIX since Windows 10, but no ConnectEx for it.
func (e *eng) Dial(raddr net.Addr, owner engine.DialOwner) error {
	ta, ok := raddr.(*net.TCPAddr)
	if !ok {
		if _, unix := raddr.(*net.UnixAddr); unix {
			return fmt.Errorf("cport: iocp: unix sockets not supported: %w", engine.ErrUnsupported)
		}
		return fmt.Errorf("cport: iocp: cannot dial %v: %w", raddr, engine.ErrUnsupported)
	}
	if err := windows.LoadConnectEx(); err != nil {
		return fmt.Errorf("cport: iocp: no ConnectEx: %w: %w", err, engine.ErrUnsupported)
	}
	family := int32(windows.AF_INET6)
	var sa, wild windows.Sockaddr
	if ip4 := ta.IP.To4(); ip4 != nil {
		family = windows.AF_INET
		a := &windows.SockaddrInet4{Port: ta.Port}
		copy(a.Addr[:], ip4)
		sa, wild = a, &windows.SockaddrInet4{}
	} else {
		a := &windows.SockaddrInet6{Port: ta.Port}
		copy(a.Addr[:], ta.IP.To16())
		if ta.Zone != "" {
			if ifi, err := net.InterfaceByName(ta.Zone); err == nil {
				a.ZoneId = uint32(ifi.Index)
			}
		}
		sa, wild = a, &windows.SockaddrInet6{}
	}
	h, err := windows.WSASocket(family, windows.SOCK_STREAM, windows.IPPROTO_TCP, nil, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
	if err != nil {
		return sockopt.WinError("wsasocket", err)
	}
	if err := windows.Bind(h, wild); err != nil {
		e.closesocket(h)
		return sockopt.WinError("bind", err)
	}
	windows.SetsockoptInt(h, windows.IPPROTO_TCP, windows.TCP_NODELAY, 1) // as Go's net does; a failure only costs latency
	s := &sock{dial: &dialState{owner: owner, raddr: raddr, sa: sa}}
	if err := e.register(s, h); err != nil {
		e.closesocket(h)
		return sockopt.WinError("CreateIoCompletionPort", err)
	}
	e.mu.Lock()
	e.dials[s] = struct{}{}
	e.mu.Unlock()
	s.mu.Lock()
	s.aop.pin.Pin(sa) // the address, for the kernel, until the packet (unpinned with the op)
	done, err := s.startLocked(&s.aop, func(o *windows.Overlapped) error {
		return windows.ConnectEx(s.h, sa, nil, 0, nil, o)
	})
	s.mu.Unlock()
	if done {
		e.connectResult(s, err)
	}
	return nil
}

// connectResult finishes the ConnectEx of s that ended with err (its
// packet has come, or it finished in the call): a connection, reported
// with DialOwner.Connected, or a failure, the socket closed.
func (e *eng) connectResult(s *sock, err error) {
	e.mu.Lock()
	delete(e.dials, s)
	e.mu.Unlock()
	d := s.dial
	var local net.Addr
	s.mu.Lock()
	closed := s.closed
	if err == nil && !closed {
		// Give the socket its connected state; without it getpeername,
		// getsockname and shutdown fail on it (ConnectEx's
		// documentation). Under s.mu: s.h stays open meanwhile.
		err = windows.Setsockopt(s.h, windows.SOL_SOCKET, windows.SO_UPDATE_CONNECT_CONTEXT, nil, 0)
		if err == nil {
			err = setNonblock(s.h) // for the receive's drain, as an accepted socket
		}
		local, _ = sockAddrs(s.h)
	}
	s.mu.Unlock()
	switch {
	case closed || err == windows.ERROR_OPERATION_ABORTED:
		e.closeSock(s, true)
		d.owner.Failed(engine.ErrCanceled)
		return
	case err != nil:
		e.closeSock(s, true)
		d.owner.Failed(sockopt.WinError("connectex", err))
		return
	}
	// No operation is started on s before Connected hands it over, so no
	// packet can look for its owner before it is stored.
	s.conn = d.owner.NewConn((*conn)(s), local, d.raddr)
	d.owner.Connected(s.conn)
}

// CancelDial closes owner's socket if it is still connecting: its
// ConnectEx is canceled, and its packet ends the dial with ErrCanceled.
func (e *eng) CancelDial(owner engine.DialOwner) {
	e.mu.Lock()
	var found *sock
	for s := range e.dials {
		if s.dial.owner == owner {
			found = s
			break
		}
	}
	e.mu.Unlock()
	if found != nil {
		e.closeSock(found, true)
	}
}

// endDials closes the sockets still connecting as the engine closes:
// their ConnectEx is canceled, and its packet, which the loop awaits,
// ends each dial with ErrCanceled.
func (e *eng) endDials() {
	e.mu.Lock()
	socks := make([]*sock, 0, len(e.dials))
	for s := range e.dials {
		socks = append(socks, s)
	}
	e.mu.Unlock()
	for _, s := range socks {
		e.closeSock(s, true)
	}
}
