package sockopt

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// winError is a Windows error that errors.Is also matches to the POSIX
// error the rest of cport speaks of: on Windows, syscall.ECONNRESET is an
// invented Errno that no Winsock call returns, so errors.Is(WSAECONNRESET,
// syscall.ECONNRESET) is false, and callers that check for a reset the
// portable way would miss it.
type winError struct {
	op    string
	errno syscall.Errno // what Windows said
	posix syscall.Errno // what it means, or 0
}

func (e *winError) Error() string { return e.op + ": " + e.errno.Error() }
func (e *winError) Unwrap() error { return e.errno }
func (e *winError) Is(target error) bool {
	t, ok := target.(syscall.Errno)
	return ok && e.posix != 0 && t == e.posix
}

// WinError wraps a Winsock or completion error of the call op (a
// syscall.Errno; other errors are returned as they are) so that errors.Is
// also matches it to the POSIX error it means, and its message names op.
//
// A reset arrives as WSAECONNRESET from a call, and as ERROR_NETNAME_DELETED
// from a completion packet (STATUS_CONNECTION_RESET, STATUS_REMOTE_DISCONNECT
// and STATUS_LOCAL_DISCONNECT translate to it); WSAECONNABORTED and
// ERROR_CONNECTION_ABORTED report a connection the stack dropped, after a
// reset or a retransmission timeout: all of them break the connection, and
// match syscall.ECONNRESET. WSAESHUTDOWN, a send after shutdown, matches
// syscall.EPIPE. A refused connect, WSAECONNREFUSED from a call and
// ERROR_CONNECTION_REFUSED from ConnectEx's packet, matches
// syscall.ECONNREFUSED. A datagram too long, WSAEMSGSIZE, matches
// syscall.EMSGSIZE. See "Windows Sockets Error Codes":
// https://learn.microsoft.com/windows/win32/winsock/windows-sockets-error-codes-2
func WinError(op string, err error) error {
	errno, ok := err.(syscall.Errno)
	if !ok {
		return err
	}
	return &winError{op: op, errno: errno, posix: posixErrno(errno)}
}

// posixErrno returns the POSIX error a Windows error means (see WinError),
// or 0.
func posixErrno(errno syscall.Errno) syscall.Errno {
	switch errno {
	case windows.WSAECONNRESET, windows.WSAECONNABORTED, windows.ERROR_NETNAME_DELETED, windows.ERROR_CONNECTION_ABORTED:
		return syscall.ECONNRESET
	case windows.WSAESHUTDOWN:
		return syscall.EPIPE
	case windows.WSAECONNREFUSED, windows.ERROR_CONNECTION_REFUSED:
		return syscall.ECONNREFUSED
	case windows.WSAEMSGSIZE:
		return syscall.EMSGSIZE
	}
	return 0
}
