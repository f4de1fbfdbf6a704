package sockopt

import (
	"errors"
	"net"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenTCP opens a TCP listening socket bound to laddr, non-blocking and
// close-on-exec, with SO_REUSEADDR, and returns its descriptor and the
// address it is bound to (the port chosen for port 0).
//
// The address family is chosen as net.Listen chooses it: "tcp4" is IPv4,
// "tcp6" IPv6 only (IPV6_V6ONLY=1); "tcp" with a wildcard address (":port",
// "0.0.0.0:port", "[::]:port") is a dual-stack IPv6 socket (IPV6_V6ONLY=0)
// that also accepts IPv4 clients, or an IPv4 socket where the system has no
// IPv6; "tcp" with a specific address takes that address's family.
//
// backlog is passed to listen(2), which caps it at net.core.somaxconn.
// Errors are *os.SyscallError values naming the failing call, so that
// errors.Is(err, syscall.EADDRINUSE) and the like work.
func ListenTCP(network string, laddr *net.TCPAddr, backlog int) (fd int, bound *net.TCPAddr, err error) {
	ip := laddr.IP
	wildcard := ip == nil || ip.IsUnspecified()
	var family int
	v6only := false
	switch network {
	case "tcp4":
		if !wildcard && ip.To4() == nil {
			return -1, nil, &net.AddrError{Err: "non-IPv4 address", Addr: ip.String()}
		}
		family = unix.AF_INET
	case "tcp6":
		if !wildcard && ip.To4() != nil {
			return -1, nil, &net.AddrError{Err: "non-IPv6 address", Addr: ip.String()}
		}
		family, v6only = unix.AF_INET6, true
	case "tcp":
		switch {
		case wildcard:
			family = unix.AF_INET6
		case ip.To4() != nil:
			family = unix.AF_INET
		default:
			family = unix.AF_INET6
		}
	default:
		return -1, nil, net.UnknownNetworkError(network)
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil && family == unix.AF_INET6 && network == "tcp" && wildcard &&
		(errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPROTONOSUPPORT)) {
		family = unix.AF_INET // no IPv6 here: an IPv4 wildcard serves every client there is
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	}
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	fail := func(call string, err error) (int, *net.TCPAddr, error) {
		unix.Close(fd)
		return -1, nil, os.NewSyscallError(call, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolint(v6only)); err != nil {
			return fail("setsockopt", err)
		}
	}
	sa, err := sockaddr(family, laddr)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fail("listen", err)
	}
	bound, err = LocalAddr(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, bound, nil
}

// sockaddr converts a to a socket address of family.
func sockaddr(family int, a *net.TCPAddr) (unix.Sockaddr, error) {
	if family == unix.AF_INET {
		sa := &unix.SockaddrInet4{Port: a.Port}
		if a.IP != nil {
			copy(sa.Addr[:], a.IP.To4())
		}
		return sa, nil
	}
	sa := &unix.SockaddrInet6{Port: a.Port}
	if a.IP != nil && !a.IP.Equal(net.IPv4zero) { // 0.0.0.0 on a dual-stack socket means ::
		copy(sa.Addr[:], a.IP.To16())
	}
	if a.Zone != "" {
		if ifi, err := net.InterfaceByName(a.Zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else if n, err := strconv.Atoi(a.Zone); err == nil {
			sa.ZoneId = uint32(n)
		} else {
			return nil, &net.AddrError{Err: "unknown zone", Addr: a.Zone}
		}
	}
	return sa, nil
}

// LocalAddr returns the address fd is bound to (getsockname(2)).
func LocalAddr(fd int) (*net.TCPAddr, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	return TCPAddr(sa), nil
}

// tcpAddr is a net.TCPAddr with room for its IP, so that one allocation
// holds both.
type tcpAddr struct {
	a  net.TCPAddr
	ip [net.IPv6len]byte
}

// TCPAddr converts a socket address from accept(2) or getsockname(2) to a
// *net.TCPAddr (nil for anything but IPv4 and IPv6), in one allocation.
// IPv4 addresses get a 4-byte IP, as net's own conversions give them.
func TCPAddr(sa unix.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		t := new(tcpAddr)
		copy(t.ip[:], sa.Addr[:])
		t.a = net.TCPAddr{IP: t.ip[:net.IPv4len], Port: sa.Port}
		return &t.a
	case *unix.SockaddrInet6:
		t := new(tcpAddr)
		t.ip = sa.Addr
		t.a = net.TCPAddr{IP: t.ip[:], Port: sa.Port}
		if sa.ZoneId != 0 {
			t.a.Zone = zoneName(int(sa.ZoneId))
		}
		return &t.a
	}
	return nil
}

func zoneName(index int) string {
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(index)
}

// SameAddr reports whether a and b are the same address.
func SameAddr(a, b *net.TCPAddr) bool {
	return a != nil && b != nil && a.Port == b.Port && a.Zone == b.Zone && a.IP.Equal(b.IP)
}

// SetNoDelay turns off Nagle's algorithm on fd, as Go's net does for every
// TCP connection.
func SetNoDelay(fd int) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1))
}

func boolint(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Writev is writev(2) without allocating (unix.Writev takes [][]byte and
// builds its iovecs anew each call); it retries EINTR. One vector is
// written with write(2), which spares the kernel copying in the iovec
// array (a request-response server's usual write is one reply).
func Writev(fd int, vecs []unix.Iovec) (int, error) {
	for {
		var n uintptr
		var e unix.Errno
		if len(vecs) == 1 {
			n, _, e = unix.Syscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(vecs[0].Base)), uintptr(vecs[0].Len))
		} else {
			n, _, e = unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&vecs[0])), uintptr(len(vecs)))
		}
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}
