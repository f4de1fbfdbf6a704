package sockopt

import (
	"io"
	"net"
	"os"
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

// RawTCPAddr converts an address filled in by accept(2); nil if it is not
// an IP address.
func RawTCPAddr(sa *unix.RawSockaddrAny) *net.TCPAddr {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return &net.TCPAddr{IP: net.IP(in.Addr[:]).To16(), Port: ntohs(in.Port)}
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		ip := make(net.IP, net.IPv6len)
		copy(ip, in.Addr[:])
		return &net.TCPAddr{IP: ip, Port: ntohs(in.Port)}
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
