package iocp

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The iocp engine's datagram sockets (UDP): see doc.go, "Datagram
// sockets".

// packetState is what a datagram socket's overlapped calls hand the
// kernel, beside its sock (a pointer there, so that a TCP connection's
// sock carries none of it): the WSARecvFrom's buffer, WSABUF, sender
// sockaddr, its length and flags, written by the kernel until the
// receive's packet; the WSASendTo's WSABUF and destination, captured by
// the call, pinned until its packet all the same. Pinned with the sock's
// op (rop, wop) for each call.
type packetState struct {
	owner engine.PacketOwner
	laddr *net.UDPAddr
	v6    bool // AF_INET6: sockaddrs are sockaddr_in6

	rbuf    *engine.Buf // the buffer the pending WSARecvFrom fills; the kernel's until its packet
	rwsa    windows.WSABuf
	rfrom   windows.RawSockaddrAny
	rlen    int32
	rflags  uint32
	swsa    windows.WSABuf
	sto     windows.RawSockaddrAny
	sbuf    []byte // the datagram in flight: the owner's until SendDone
	sending bool   // a WSASendTo's packet is awaited; under sock.mu
}

// packet is a datagram socket's sock as package cport sees it
// (engine.PacketConn).
type packet sock

// ListenPacket opens an overlapped UDP socket bound as net.ListenPacket
// would bind it, associated with the port. ICMP port-unreachable reports
// are turned off (SIO_UDP_CONNRESET), as an unconnected socket on Linux
// hears none: a receive does not fail because an earlier send went to a
// closed port.
func (e *eng) ListenPacket(network, address string, owner engine.PacketOwner) (engine.PacketConn, error) {
	e.mu.Lock()
	stopping := e.stopping
	e.mu.Unlock()
	if stopping {
		return nil, engine.ErrClosed
	}
	ua, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, err
	}
	h, family, err := e.boundSocket(network, ua.IP, ua.Port, ua.Zone, windows.SOCK_DGRAM, windows.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	off, ret := uint32(0), uint32(0)
	windows.WSAIoctl(h, windows.SIO_UDP_CONNRESET, (*byte)(unsafe.Pointer(&off)), 4, nil, 0, &ret, nil, 0) // best effort: a report then ends nothing (recvDone skips it)
	p := &packetState{owner: owner, v6: family == windows.AF_INET6}
	if lsa, err := windows.Getsockname(h); err == nil {
		p.laddr = net.UDPAddrFromAddrPort(sockaddrAddrPort(lsa))
	}
	s := &sock{pkt: p, family: family}
	if err := e.register(s, h); err != nil {
		e.closesocket(h)
		return nil, sockopt.WinError("CreateIoCompletionPort", err)
	}
	return (*packet)(s), nil
}

func (pk *packet) LocalAddr() net.Addr { return pk.pkt.laddr }

// Recv starts a WSARecvFrom if the receive is ready and none is pending.
func (pk *packet) Recv() {
	s := (*sock)(pk)
	s.e.packetPump(s)
}

// Release takes back a buffer: a multishot receive may go on.
func (pk *packet) Release(b *engine.Buf) {
	s := (*sock)(pk)
	s.e.bufs.Put(b)
	s.e.packetPump(s)
}

// Flush starts the WSASendTo of the queued datagrams, one at a time.
func (pk *packet) Flush() {
	s := (*sock)(pk)
	s.e.packetWrite(s)
}

// Close cancels the pending calls (their packets still come) and closes
// the socket; an armed receive with nothing pending ends now.
func (pk *packet) Close() {
	s := (*sock)(pk)
	s.e.closeSock(s, false)
	s.e.packetPump(s)
}

// packetPump moves a datagram socket's receive on as far as it can
// without waiting (packetPumpOnce); see runPump.
func (e *eng) packetPump(s *sock) { e.runPump(s, true) }

func (e *eng) packetPumpOnce(s *sock) {
	p := s.pkt
	for {
		st := p.owner.RecvState()
		s.mu.Lock()
		switch {
		case s.readPending:
			s.mu.Unlock()
			return
		case s.closed || st.Closed:
			s.mu.Unlock()
			if st.Armed {
				p.owner.Deliver(nil, 0, 0, netip.AddrPort{}, engine.ErrCanceled)
			}
			return
		case !st.Ready || e.cfg.Port.Closed():
			s.mu.Unlock()
			return
		}
		b := e.bufs.Get()
		p.rbuf = b
		p.rwsa = windows.WSABuf{Len: uint32(engine.PacketRoom(len(b.B))), Buf: &b.B[0]}
		p.rlen = int32(unsafe.Sizeof(p.rfrom))
		p.rflags = 0
		s.rop.pin.Pin(p)
		s.rop.pin.Pin(&b.B[0])
		s.readPending = true
		done, err := s.startLocked(&s.rop, func(o *windows.Overlapped) error {
			if err := e.fail(engine.CallRecv); err != nil {
				return err
			}
			return windows.WSARecvFrom(s.h, &p.rwsa, 1, &s.rop.qty, &p.rflags, &p.rfrom, &p.rlen, o, nil)
		})
		if !done {
			s.mu.Unlock()
			return // its packet comes: packetRecvDone
		}
		s.readPending = false
		n := int(s.rop.qty)
		p.rbuf = nil
		s.mu.Unlock()
		e.packetRecvResult(s, b, n, err)
	}
}

// packetRecvDone handles a WSARecvFrom's packet.
func (e *eng) packetRecvDone(s *sock, n int, err error) {
	p := s.pkt
	s.mu.Lock()
	b := p.rbuf
	p.rbuf = nil
	s.mu.Unlock()
	e.packetRecvResult(s, b, n, err)
	s.mu.Lock()
	s.readPending = false
	s.mu.Unlock()
	e.packetPump(s)
}

// packetRecvResult delivers what a WSARecvFrom got: a datagram (one longer
// than the buffer, ERROR_MORE_DATA or WSAEMSGSIZE, truncated to it, as on
// Linux), or the end of the receive. An ICMP report of an earlier send
// (WSAECONNRESET, WSAENETRESET, where SIO_UDP_CONNRESET did not take) ends
// nothing: the next datagram is awaited.
func (e *eng) packetRecvResult(s *sock, b *engine.Buf, n int, err error) {
	p := s.pkt
	switch err {
	case nil, windows.ERROR_MORE_DATA, windows.WSAEMSGSIZE:
		p.owner.Deliver(b, 0, min(n, engine.PacketRoom(len(b.B))), rawAddrPort(&p.rfrom), nil)
		return
	}
	e.bufs.Put(b)
	switch {
	case interrupted(err), err == windows.WSAECONNRESET, err == windows.WSAENETRESET,
		err == windows.ERROR_PORT_UNREACHABLE, err == windows.ERROR_NETNAME_DELETED:
	case err == windows.ERROR_OPERATION_ABORTED:
		p.owner.Deliver(nil, 0, 0, netip.AddrPort{}, engine.ErrCanceled)
	default:
		p.owner.Deliver(nil, 0, 0, netip.AddrPort{}, sockopt.WinError("wsarecvfrom", err))
	}
}

// packetWrite starts a WSASendTo of each datagram queued, one at a time,
// going on while they complete at once.
func (e *eng) packetWrite(s *sock) {
	p := s.pkt
	for {
		b, to, ok := p.owner.NextSend()
		if !ok {
			return
		}
		tolen, err := putSockaddr(&p.sto, to, p.v6)
		if err != nil {
			p.owner.SendDone(err)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			p.owner.SendDone(engine.ErrCanceled)
			continue
		}
		p.sbuf = b
		p.swsa = windows.WSABuf{Len: uint32(len(b))}
		s.wop.pin.Pin(p)
		if len(b) > 0 {
			p.swsa.Buf = &b[0]
			s.wop.pin.Pin(&b[0])
		}
		p.sending = true
		e.writes.Add(1)
		done, err := s.startLocked(&s.wop, func(o *windows.Overlapped) error {
			if err := e.fail(engine.CallSend); err != nil {
				return err
			}
			return windows.WSASendTo(s.h, &p.swsa, 1, &s.wop.qty, 0, &p.sto, tolen, o, nil)
		})
		if !done {
			s.mu.Unlock()
			return // its packet comes: packetSendDone
		}
		p.sending, p.sbuf = false, nil
		s.mu.Unlock()
		p.owner.SendDone(sendError(err))
	}
}

// packetSendDone handles a WSASendTo's packet, and goes on with the next
// datagram.
func (e *eng) packetSendDone(s *sock, err error) {
	p := s.pkt
	s.mu.Lock()
	p.sending, p.sbuf = false, nil
	s.mu.Unlock()
	p.owner.SendDone(sendError(err))
	e.packetWrite(s)
}

func sendError(err error) error {
	switch err {
	case nil:
		return nil
	case windows.ERROR_OPERATION_ABORTED:
		return engine.ErrCanceled
	}
	return sockopt.WinError("wsasendto", err)
}

// putSockaddr writes to as a sockaddr for a socket of the family v6 says
// into raw, and returns its length: an IPv4 address is mapped for an
// AF_INET6 socket; an IPv6 one cannot go from an AF_INET socket.
func putSockaddr(raw *windows.RawSockaddrAny, to netip.AddrPort, v6 bool) (int32, error) {
	*raw = windows.RawSockaddrAny{}
	a := to.Addr()
	if !v6 {
		a = a.Unmap()
		if !a.Is4() {
			return 0, windows.WSAEAFNOSUPPORT
		}
		in := (*windows.RawSockaddrInet4)(unsafe.Pointer(raw))
		in.Family = windows.AF_INET
		putPort(&in.Port, to.Port())
		in.Addr = a.As4()
		return int32(unsafe.Sizeof(*in)), nil
	}
	in := (*windows.RawSockaddrInet6)(unsafe.Pointer(raw))
	in.Family = windows.AF_INET6
	putPort(&in.Port, to.Port())
	in.Addr = a.As16()
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			in.Scope_id = uint32(ifi.Index)
		}
	}
	return int32(unsafe.Sizeof(*in)), nil
}

// putPort stores port in network byte order, as a sockaddr holds it.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// rawAddrPort reads a sender's sockaddr, IPv4-mapped addresses unmapped.
func rawAddrPort(raw *windows.RawSockaddrAny) netip.AddrPort {
	switch raw.Addr.Family {
	case windows.AF_INET:
		in := (*windows.RawSockaddrInet4)(unsafe.Pointer(raw))
		b := (*[2]byte)(unsafe.Pointer(&in.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(b[0])<<8|uint16(b[1]))
	case windows.AF_INET6:
		in := (*windows.RawSockaddrInet6)(unsafe.Pointer(raw))
		b := (*[2]byte)(unsafe.Pointer(&in.Port))
		a := netip.AddrFrom16(in.Addr).Unmap()
		if in.Scope_id != 0 && a.Is6() {
			if ifi, err := net.InterfaceByIndex(int(in.Scope_id)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, uint16(b[0])<<8|uint16(b[1]))
	}
	return netip.AddrPort{}
}

// sockaddrAddrPort converts a Winsock address from getsockname.
func sockaddrAddrPort(sa windows.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *windows.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *windows.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
