package portable

import (
	"errors"
	"net"
	"os"
	"runtime"
	"syscall"
)

// The names Go's net package gives, in its errors, to the calls the
// engine makes through it (net/fd_*.go, net/writev_unix.go): an injected
// failure (see the package doc's "Faults") is wrapped as a real one is,
// &net.OpError{Op: op, Err: os.NewSyscallError(call, errno)}, so that
// errors.Is(err, errno) holds and the message reads the same.
var (
	acceptCall = func() string {
		switch runtime.GOOS {
		case "windows":
			return "acceptex"
		case "darwin", "ios", "aix", "js", "wasip1":
			return "accept"
		}
		return "accept4"
	}()
	readCall   = pick("wsarecv", "read")
	writevCall = pick("wsasend", "writev") // the op's name too
)

func pick(windows, other string) string {
	if runtime.GOOS == "windows" {
		return windows
	}
	return other
}

// acceptError is the error of net.Listener.Accept whose accept system call
// failed with errno.
func (l *listener) acceptError(errno syscall.Errno) error {
	a := l.ln.Addr()
	return &net.OpError{Op: "accept", Net: a.Network(), Addr: a, Err: os.NewSyscallError(acceptCall, errno)}
}

// opError is the error of a call op of net.Conn whose system call call
// failed with errno.
func (c *conn) opError(op, call string, errno syscall.Errno) error {
	la := c.nc.LocalAddr()
	return &net.OpError{Op: op, Net: la.Network(), Source: la, Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError(call, errno)}
}

// retriedByNet reports whether Go's net package retries a call that failed
// with errno before returning: EINTR at once, EAGAIN once the runtime
// poller says the socket is ready. An injected one is then no failure at
// all: the call is made.
func retriedByNet(errno syscall.Errno) bool {
	return errno == syscall.EINTR || errno == syscall.EAGAIN
}

// transientAccept reports whether an accept's error concerns only the
// connection being accepted (gone before it was: ECONNABORTED, EPROTO;
// refused by a firewall: EPERM) or the call (EINTR, EAGAIN), so that
// accepting goes on at once and nobody hears of it, as Go's net does
// itself for EINTR and ECONNABORTED.
func transientAccept(err error) bool {
	for _, errno := range [...]syscall.Errno{syscall.EINTR, syscall.EAGAIN, syscall.ECONNABORTED, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
