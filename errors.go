package cport

import (
	"errors"
	"net"
	"os"

	"cport.dev/cport/internal/engine"
)

var (
	// ErrClosed is returned by every call on a closed port (Worker.Wait,
	// Port.Post, Port.Listen: the tutorial's "completion port handle
	// closed" case), and by calls on a closed Listener or Conn. errors.Is
	// matches it to net.ErrClosed too, as for Go's net.
	ErrClosed = engine.ErrClosed

	// ErrCanceled completes an operation whose connection or listener was
	// closed before the operation finished (IOCP's ERROR_OPERATION_ABORTED).
	// errors.Is matches it to net.ErrClosed too.
	ErrCanceled = engine.ErrCanceled

	// ErrTimeout is returned by Worker.Wait when its timeout passed with no
	// completion to deliver (IOCP's WAIT_TIMEOUT).
	ErrTimeout = errors.New("cport: wait timed out")

	// ErrHandler is returned by Worker.Wait on a port whose completions go
	// to Config.Handler: it queues none.
	ErrHandler = errors.New("cport: the port runs its completions on Config.Handler: there is nothing to wait for")

	// ErrBusy is returned when an operation is started on a connection or
	// listener that already has one of that kind in progress: a connection
	// has at most one receive (single or multishot) and a listener at most
	// one accept, so that their completions keep the stream's order.
	ErrBusy = errors.New("cport: operation already in progress")

	// ErrAdapted is returned by the calls that would take a connection's
	// or listener's completions from its net.Conn or net.Listener adapter
	// (Conn.NetConn, Listener.NetListener): Recv, Send and the like on an
	// adapted Conn, Accept on an adapted Listener, and adapting twice.
	ErrAdapted = errors.New("cport: adapted to net.Conn or net.Listener: use the adapter")

	// ErrUnsupported is returned for a feature the chosen backend lacks.
	ErrUnsupported = engine.ErrUnsupported

	// ErrUnavailable is returned by Open when the requested backend cannot
	// run on this system (an old kernel, io_uring disabled by sysctl or a
	// seccomp profile, another operating system).
	ErrUnavailable = engine.ErrUnavailable
)

// OpError is the error of a failed socket operation, as delivered in
// Completion.Err or returned by a call. It wraps the system's error, so
// errors.Is(err, syscall.ECONNRESET) and the like work. It is a net.Error,
// as Go's net.OpError is: what net.Conn's callers (crypto/tls, net/http)
// ask of a timeout works on it.
type OpError struct {
	Op      string   // "listen", "accept", "dial", "adopt", "detach", "recv", "send", "recvfrom", "sendto"
	Backend string   // the backend's name
	Addr    net.Addr // the remote address, or the local one for a listener; may be nil
	Err     error    // the underlying error
}

func (e *OpError) Error() string {
	s := "cport " + e.Backend + " " + e.Op
	if e.Addr != nil {
		s += " " + e.Addr.String()
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the operation timed out: net.Error's Timeout.
// It is true of an error that matches os.ErrDeadlineExceeded (a
// deadline's), context.DeadlineExceeded, or a system error that says so
// (ETIMEDOUT).
func (e *OpError) Timeout() bool {
	if errors.Is(e.Err, os.ErrDeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// Temporary reports whether the operation may succeed if tried again: a
// timeout, or a system error that says so (running out of file
// descriptors, on an accept). It is net.Error's Temporary, deprecated
// there, which net/http's Server still asks of a failed Accept.
func (e *OpError) Temporary() bool {
	if e.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(e.Err, &t) && t.Temporary()
}
