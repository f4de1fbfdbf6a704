package sockopt

import (
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenUDP opens a non-blocking, close-on-exec UDP socket for network
// ("udp", "udp4", "udp6") bound to address as net.ListenPacket binds it
// (which it does, then takes a duplicate of the descriptor). v6 says the
// socket is AF_INET6, whose sockaddrs are sockaddr_in6 (IPv4 peers of a
// dual-stack socket as IPv4-mapped addresses).
func ListenUDP(network, address string) (fd int, bound *net.UDPAddr, v6 bool, err error) {
	c, err := net.ListenPacket(network, address)
	if err != nil {
		return -1, nil, false, err
	}
	defer c.Close()
	uc := c.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		return -1, nil, false, err
	}
	fd = -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, nil, false, err
	}
	if derr != nil {
		return -1, nil, false, os.NewSyscallError("fcntl", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, nil, false, os.NewSyscallError("fcntl", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, false, os.NewSyscallError("getsockname", err)
	}
	_, v6 = sa.(*unix.SockaddrInet6)
	return fd, uc.LocalAddr().(*net.UDPAddr), v6, nil
}

// UDPSockaddr returns to as a sockaddr for a socket of the family v6 says:
// an IPv4 address is mapped for an AF_INET6 socket; an IPv6 one cannot go
// from an AF_INET socket (EAFNOSUPPORT).
func UDPSockaddr(to netip.AddrPort, v6 bool) (unix.Sockaddr, error) {
	a := to.Addr()
	if !v6 {
		a = a.Unmap()
		if !a.Is4() {
			return nil, unix.EAFNOSUPPORT
		}
		return &unix.SockaddrInet4{Port: int(to.Port()), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(to.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		id, err := zoneID(z)
		if err != nil {
			return nil, err
		}
		sa.ZoneId = id
	}
	return sa, nil
}

// PutUDPSockaddr writes UDPSockaddr's address into raw, for a system call
// the kernel finishes later (io_uring's sendmsg), and returns its length.
func PutUDPSockaddr(raw *unix.RawSockaddrAny, to netip.AddrPort, v6 bool) (uint32, error) {
	sa, err := UDPSockaddr(to, v6)
	if err != nil {
		return 0, err
	}
	*raw = unix.RawSockaddrAny{}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		in.Family = unix.AF_INET
		in.Port = htons(sa.Port)
		in.Addr = sa.Addr
		return unix.SizeofSockaddrInet4, nil
	case *unix.SockaddrInet6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
		in.Family = unix.AF_INET6
		in.Port = htons(sa.Port)
		in.Addr = sa.Addr
		in.Scope_id = sa.ZoneId
		return unix.SizeofSockaddrInet6, nil
	}
	return 0, unix.EAFNOSUPPORT
}

// SockaddrAddrPort converts a datagram's sender from recvfrom(2) to an
// address, IPv4-mapped ones unmapped; the zero AddrPort for other
// families.
func SockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a = a.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(a, uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// RawAddrPort is SockaddrAddrPort for a sockaddr the kernel wrote into
// memory (io_uring's recvmsg): length bytes at p.
func RawAddrPort(p unsafe.Pointer, length uint32) netip.AddrPort {
	if length < 2 {
		return netip.AddrPort{}
	}
	switch (*unix.RawSockaddr)(p).Family {
	case unix.AF_INET:
		if length < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		in := (*unix.RawSockaddrInet4)(p)
		return SockaddrAddrPort(&unix.SockaddrInet4{Port: ntohs(in.Port), Addr: in.Addr})
	case unix.AF_INET6:
		if length < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		in := (*unix.RawSockaddrInet6)(p)
		return SockaddrAddrPort(&unix.SockaddrInet6{Port: ntohs(in.Port), Addr: in.Addr, ZoneId: in.Scope_id})
	}
	return netip.AddrPort{}
}
