package cport

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

// connAddrs returns an accepted socket's local and remote addresses.
func connAddrs(fd int) (local, remote net.Addr) {
	if sa, err := unix.Getsockname(fd); err == nil {
		if a := sockopt.TCPAddr(sa); a != nil {
			local = a
		}
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		if a := sockopt.TCPAddr(sa); a != nil {
			remote = a
		}
	}
	return local, remote
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
