package sockopt

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Listen opens a non-blocking TCP listening socket for network ("tcp",
// "tcp4", "tcp6") and address as net.Listen would (see ListenTCP).
func Listen(network, address string, backlog int) (fd int, bound *net.TCPAddr, err error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return -1, nil, net.UnknownNetworkError(network)
	}
	la, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return -1, nil, err
	}
	return ListenTCP(network, la, backlog)
}

// An AddrBuf is the memory of a *net.TCPAddr and its IP, for a caller that
// converts one address after another without allocating (RawTCPAddrIn).
type AddrBuf struct{ t tcpAddr }

// RawTCPAddrIn converts an address filled in by accept(2) in buf's memory,
// as TCPAddr does (IPv4 addresses get a 4-byte IP): the address it returns
// is valid until buf's next use. It returns nil if sa is not an IP
// address.
func RawTCPAddrIn(sa *unix.RawSockaddrAny, buf *AddrBuf) *net.TCPAddr {
	t := &buf.t
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		copy(t.ip[:], in.Addr[:])
		t.a = net.TCPAddr{IP: t.ip[:net.IPv4len], Port: ntohs(in.Port)}
		return &t.a
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		t.ip = in.Addr
		t.a = net.TCPAddr{IP: t.ip[:], Port: ntohs(in.Port)}
		return &t.a
	}
	return nil
}

// ntohs reads a port in network byte order.
func ntohs(p uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return int(b[0])<<8 | int(b[1])
}

// EOFOrReset tells a receive's end of stream from a reset whose error was
// reported to a send instead: the kernel reports a socket's error once, to
// whichever call comes first, and a receive after it sees only the end of
// stream. After a reset the socket is closed (TCP_CLOSE); after the peer's
// FIN it waits for our close (TCP_CLOSE_WAIT). A socket whose writing side
// we shut down first is closed too once the peer's FIN comes: the caller
// does not ask then.
func EOFOrReset(fd int) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err == nil && info.State == tcpClose {
		return os.NewSyscallError("recv", unix.ECONNRESET)
	}
	return io.EOF
}

// tcpClose is TCP_CLOSE of the kernel's tcp_states.h.
const tcpClose = 7

// AppendIovecs appends an iovec for each non-empty buffer of bufs (a send
// batch: empty messages are written by writing nothing) and returns the
// vectors and the bytes they hold.
func AppendIovecs(vecs []unix.Iovec, bufs [][]byte) ([]unix.Iovec, int) {
	total := 0
	for _, b := range bufs {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			vecs = append(vecs, v)
			total += len(b)
		}
	}
	return vecs, total
}

// AcceptSkippable reports whether accept(2) failed with err for the
// pending connection alone, or was interrupted: the peer gave up while
// queued (ECONNABORTED, EPROTO, and the network errors accept(2) says to
// treat like EAGAIN), a firewall refused it (EPERM), or EINTR. That
// connection is gone; the next accept may succeed.
func AcceptSkippable(err error) bool {
	switch err {
	case unix.EINTR, unix.ECONNABORTED, unix.EPROTO, unix.EPERM,
		unix.ENETDOWN, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.ENONET, unix.EHOSTUNREACH, unix.ENETUNREACH:
		return true
	}
	return false
}

// DialSocket opens the socket of a dial to raddr (non-blocking,
// close-on-exec; TCP_NODELAY for TCP, as Go's net sets it, a failure
// costing only latency) and writes raddr into raw for connect(2) (see
// DialSockaddr). It returns the socket and the address's length.
func DialSocket(raddr net.Addr, raw *unix.RawSockaddrAny) (fd int, salen uint32, err error) {
	family, salen, err := DialSockaddr(raddr, raw)
	if err != nil {
		return -1, 0, err
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	if family != unix.AF_UNIX {
		SetNoDelay(fd)
	}
	return fd, salen, nil
}

// DialSockaddr writes the socket address of raddr, a *net.TCPAddr or a
// *net.UnixAddr, into raw for connect(2), and returns the address family
// of the socket to open and the address's length. An IPv4 address (or an
// IPv4-mapped IPv6 one) is AF_INET, any other IP address AF_INET6; a Unix
// address's name is its path, or with a leading '@' a name in Linux's
// abstract namespace.
func DialSockaddr(raddr net.Addr, raw *unix.RawSockaddrAny) (family int, salen uint32, err error) {
	*raw = unix.RawSockaddrAny{}
	switch a := raddr.(type) {
	case *net.TCPAddr:
		if a.Port < 0 || a.Port > 0xffff {
			return 0, 0, &net.AddrError{Err: "invalid port", Addr: a.String()}
		}
		if ip4 := a.IP.To4(); ip4 != nil {
			sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
			sa.Family = unix.AF_INET
			sa.Port = htons(a.Port)
			copy(sa.Addr[:], ip4)
			return unix.AF_INET, unix.SizeofSockaddrInet4, nil
		}
		if len(a.IP) != net.IPv6len {
			return 0, 0, &net.AddrError{Err: "not an IP address", Addr: a.String()}
		}
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
		sa.Family = unix.AF_INET6
		sa.Port = htons(a.Port)
		copy(sa.Addr[:], a.IP)
		if a.Zone != "" {
			id, err := zoneID(a.Zone)
			if err != nil {
				return 0, 0, err
			}
			sa.Scope_id = id
		}
		return unix.AF_INET6, unix.SizeofSockaddrInet6, nil
	case *net.UnixAddr:
		sa := (*unix.RawSockaddrUnix)(unsafe.Pointer(raw))
		name := a.Name
		if len(name) == 0 || len(name) >= len(sa.Path) {
			return 0, 0, &net.AddrError{Err: "invalid Unix socket path", Addr: name}
		}
		sa.Family = unix.AF_UNIX
		for i := range len(name) {
			sa.Path[i] = int8(name[i])
		}
		// The family, the path and its NUL; an abstract name ('@', a NUL
		// for the kernel) has no NUL after it.
		salen = uint32(unsafe.Offsetof(sa.Path)) + uint32(len(name)) + 1
		if name[0] == '@' {
			sa.Path[0] = 0
			salen--
		}
		return unix.AF_UNIX, salen, nil
	}
	return 0, 0, &net.AddrError{Err: "not a TCP or Unix address", Addr: fmt.Sprint(raddr)}
}

// htons returns port in network byte order, as a sockaddr holds it.
func htons(port int) uint16 {
	var p uint16
	b := (*[2]byte)(unsafe.Pointer(&p))
	b[0], b[1] = byte(port>>8), byte(port)
	return p
}

// zoneID returns the index of the IPv6 zone (an interface's name, or its
// index).
func zoneID(zone string) (uint32, error) {
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index), nil
	}
	if n, err := strconv.Atoi(zone); err == nil && n >= 0 {
		return uint32(n), nil
	}
	return 0, &net.AddrError{Err: "unknown zone", Addr: zone}
}

// SockAddr converts a socket address from getsockname(2) or accept(2) to a
// net.Addr: a *net.TCPAddr (see TCPAddr) or a *net.UnixAddr; nil for
// other families.
func SockAddr(sa unix.Sockaddr) net.Addr {
	if u, ok := sa.(*unix.SockaddrUnix); ok {
		return &net.UnixAddr{Name: u.Name, Net: "unix"}
	}
	if a := TCPAddr(sa); a != nil {
		return a
	}
	return nil
}

// Connect is connect(2) of fd, non-blocking, to the address raw holds
// (see DialSockaddr). EINTR, like EINPROGRESS, leaves the connect going on
// in the background (connect(2)): the caller waits for the socket to be
// writable, then reads SO_ERROR (ConnectResult).
func Connect(fd int, raw *unix.RawSockaddrAny, salen uint32) error {
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(raw)), uintptr(salen))
	if e != 0 {
		return e
	}
	return nil
}

// ConnectResult tells how a non-blocking connect of fd that reported
// EINPROGRESS (or EINTR) stands, once the socket was seen writable: done
// with err nil (connected) or err (failed, the socket's error), or not
// done (a spurious wake-up: wait for the next).
func ConnectResult(fd int) (done bool, err error) {
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return true, os.NewSyscallError("getsockopt", err)
	}
	switch errno := unix.Errno(n); errno {
	case 0, unix.EISCONN:
		// As Go's net checks: a wake-up with no error but no peer either
		// is a spurious one.
		if _, err := unix.Getpeername(fd); err != nil {
			return false, nil
		}
		return true, nil
	case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return false, nil
	default:
		return true, os.NewSyscallError("connect", errno)
	}
}
