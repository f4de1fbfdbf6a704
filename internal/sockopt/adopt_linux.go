package sockopt

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Adopted is a stream socket handed to a port (Port.AdoptConn,
// Port.AdoptListener): a duplicate of the caller's descriptor, which the
// caller keeps and closes as its own.
type Adopted struct {
	FD     int      // the duplicate: non-blocking, close-on-exec; the adopter's to close
	Listen bool     // a listening socket (SO_ACCEPTCONN)
	Local  net.Addr // getsockname(2): a *net.TCPAddr or a *net.UnixAddr
	Remote net.Addr // getpeername(2) of a connected socket; nil for a listener
}

// ErrNotStream is the error of adopting a socket that is not a TCP (IPv4
// or IPv6) or Unix stream socket.
var ErrNotStream = errors.New("not a TCP or Unix stream socket")

// Adopt duplicates the descriptor of sc (F_DUPFD_CLOEXEC), checks that it
// is a stream socket of family AF_INET, AF_INET6 or AF_UNIX, listening if
// listen is set, else connected, and makes the duplicate non-blocking (the
// flag is the open file's: the caller's descriptor becomes non-blocking
// too, as Go's own net and os already keep their sockets). A TCP socket
// gets TCP_NODELAY, as Go's net gives its own (a listener's accepted
// sockets inherit it; a failure only costs latency). On an error nothing
// is left open.
func Adopt(sc syscall.Conn, listen bool) (*Adopted, error) {
	fd, err := Dup(sc)
	if err != nil {
		return nil, err
	}
	a, err := adoptFD(fd, listen)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return a, nil
}

func adoptFD(fd int, listen bool) (*Adopted, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		if err == unix.ENOTSOCK {
			return nil, fmt.Errorf("%w: %w", ErrNotStream, os.NewSyscallError("getsockopt", err))
		}
		return nil, os.NewSyscallError("getsockopt", err)
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt", err)
	}
	if typ != unix.SOCK_STREAM || domain != unix.AF_INET && domain != unix.AF_INET6 && domain != unix.AF_UNIX {
		return nil, fmt.Errorf("%w: %s", ErrNotStream, sockKind(domain, typ))
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt", err)
	}
	a := &Adopted{FD: fd, Listen: acc != 0}
	switch {
	case listen && !a.Listen:
		return nil, errors.New("not a listening socket")
	case !listen && a.Listen:
		return nil, errors.New("a listening socket, not a connection")
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		a.Local = SockAddr(sa)
	}
	if !listen {
		sa, err := unix.Getpeername(fd)
		if err != nil {
			return nil, os.NewSyscallError("getpeername", err) // ENOTCONN: not connected
		}
		a.Remote = SockAddr(sa)
		if a.Remote == nil && domain == unix.AF_UNIX {
			a.Remote = &net.UnixAddr{Net: "unix"}
		}
	}
	if a.Local == nil && domain == unix.AF_UNIX {
		a.Local = &net.UnixAddr{Net: "unix"}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	if domain != unix.AF_UNIX {
		SetNoDelay(fd)
	}
	return a, nil
}

// Detached returns a duplicate of fd (F_DUPFD_CLOEXEC) as an *os.File,
// for a socket leaving a port (Conn.Detach). The socket stays
// non-blocking: os.NewFile then puts it in Go's poller, as Go's os
// expects of a non-blocking descriptor.
func Detached(fd int, name string) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// sockKind names a socket's family and type, for an error.
func sockKind(domain, typ int) string {
	f := map[int]string{unix.AF_INET: "IPv4", unix.AF_INET6: "IPv6", unix.AF_UNIX: "Unix"}[domain]
	if f == "" {
		f = fmt.Sprintf("family %d", domain)
	}
	t := map[int]string{unix.SOCK_DGRAM: "datagram", unix.SOCK_SEQPACKET: "seqpacket", unix.SOCK_RAW: "raw", unix.SOCK_STREAM: "stream"}[typ]
	if t == "" {
		t = fmt.Sprintf("type %d", typ)
	}
	return f + " " + t + " socket"
}
