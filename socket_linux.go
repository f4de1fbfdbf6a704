package cport

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

// localAddr returns a socket's local address, or nil.
func localAddr(fd int) net.Addr {
	if sa, err := unix.Getsockname(fd); err == nil {
		if a := sockopt.TCPAddr(sa); a != nil {
			return a
		}
	}
	return nil
}

// rawTCPAddr converts an address filled in by accept(2); nil if it is not
// an IP address.
func rawTCPAddr(sa *unix.RawSockaddrAny) *net.TCPAddr {
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

// eofOrReset tells a receive's end of stream from a reset whose error was
// reported to a send instead: the kernel reports a socket's error once, to
// whichever call comes first, and a receive after it sees only the end of
// stream. After a reset the socket is closed (TCP_CLOSE); after the peer's
// FIN it waits for our close (TCP_CLOSE_WAIT).
func eofOrReset(fd int) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err == nil && info.State == tcpClose {
		return os.NewSyscallError("recv", unix.ECONNRESET)
	}
	return io.EOF
}

// tcpClose is TCP_CLOSE of the kernel's tcp_states.h.
const tcpClose = 7

// netConnEOF is eofOrReset for a connection of Go's net package.
func netConnEOF(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return io.EOF
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return io.EOF
	}
	res := io.EOF
	rc.Control(func(fd uintptr) { res = eofOrReset(int(fd)) })
	return res
}

// listenTCP opens a listening socket for an engine named backend, as
// net.Listen would for network and address, errors wrapped in *OpError.
func listenTCP(backend, network, address string, backlog int) (int, *net.TCPAddr, error) {
	fail := func(addr net.Addr, err error) (int, *net.TCPAddr, error) {
		return -1, nil, &OpError{Op: "listen", Backend: backend, Addr: addr, Err: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fail(nil, net.UnknownNetworkError(network))
	}
	la, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return fail(nil, err)
	}
	fd, bound, err := sockopt.ListenTCP(network, la, backlog)
	if err != nil {
		return fail(la, err)
	}
	return fd, bound, nil
}

// appendIovecs appends an iovec for each non-empty buffer of bufs (the
// batch of Conn.sendBatch: empty messages are written by writing nothing)
// and returns the vectors and the bytes they hold.
func appendIovecs(vecs []unix.Iovec, bufs [][]byte) ([]unix.Iovec, int) {
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
