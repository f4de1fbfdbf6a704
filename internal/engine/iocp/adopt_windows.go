package iocp

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The iocp engine's adopted sockets: see doc.go, "Adopted sockets".

// errHeld is the error of a socket associated with another completion
// port already, Go's runtime's for every socket of Go's net (and every
// overlapped handle given to os.NewFile): an association is the
// socket's, shared by every duplicate, and cannot be changed.
var errHeld = fmt.Errorf("cport: iocp: the socket is associated with another completion port (Go's net and os associate theirs with the runtime's); adopt a socket handle Go does not hold: %w", engine.ErrUnsupported)

// adopt duplicates sc's socket (WSADuplicateSocket to this process, then
// WSASocket from its protocol information: a handle of the engine's own,
// overlapped, not inherited), checks it is a TCP stream socket, listening
// or not as asked, and associates it with the port.
func (e *eng) adopt(sc syscall.Conn, s *sock, listen bool) (windows.Handle, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info windows.WSAProtocolInfo
	var derr error
	if err := rc.Control(func(fd uintptr) {
		derr = windows.WSADuplicateSocket(windows.Handle(fd), windows.GetCurrentProcessId(), &info)
	}); err != nil {
		return 0, err
	}
	if derr != nil {
		if errors.Is(derr, windows.WSAENOTSOCK) {
			return 0, fmt.Errorf("not a TCP stream socket: %w", sockopt.WinError("wsaduplicatesocket", derr))
		}
		return 0, sockopt.WinError("wsaduplicatesocket", derr)
	}
	switch {
	case info.AddressFamily == windows.AF_UNIX:
		return 0, fmt.Errorf("cport: iocp: unix sockets not supported: %w", engine.ErrUnsupported)
	case info.SocketType != windows.SOCK_STREAM || info.AddressFamily != windows.AF_INET && info.AddressFamily != windows.AF_INET6:
		return 0, fmt.Errorf("not a TCP stream socket (family %d, type %d)", info.AddressFamily, info.SocketType)
	}
	const fromProtocolInfo = -1 // FROM_PROTOCOL_INFO
	h, err := windows.WSASocket(fromProtocolInfo, fromProtocolInfo, fromProtocolInfo, &info, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
	if err != nil {
		return 0, sockopt.WinError("wsasocket", err)
	}
	acc, err := windows.GetsockoptInt(h, windows.SOL_SOCKET, soAcceptConn)
	switch {
	case err != nil:
		e.closesocket(h)
		return 0, sockopt.WinError("getsockopt", err)
	case listen && acc == 0:
		e.closesocket(h)
		return 0, errors.New("not a listening socket")
	case !listen && acc != 0:
		e.closesocket(h)
		return 0, errors.New("a listening socket, not a connection")
	}
	if !listen {
		if _, err := windows.Getpeername(h); err != nil {
			e.closesocket(h)
			return 0, sockopt.WinError("getpeername", err) // not connected
		}
		if err := setNonblock(h); err != nil { // for the receive's drain, as an accepted socket
			e.closesocket(h)
			return 0, sockopt.WinError("ioctlsocket", err)
		}
	}
	s.family = info.AddressFamily
	if err := e.register(s, h); err != nil {
		e.closesocket(h)
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			return 0, errHeld
		}
		return 0, sockopt.WinError("CreateIoCompletionPort", err)
	}
	return h, nil
}

// soAcceptConn is SO_ACCEPTCONN.
const soAcceptConn = 0x0002

// AdoptConn makes a connection of a duplicate of sc's socket, as an
// accepted one.
func (e *eng) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	s := &sock{}
	h, err := e.adopt(sc, s, false)
	if err != nil {
		return nil, err
	}
	windows.SetsockoptInt(h, windows.IPPROTO_TCP, windows.TCP_NODELAY, 1) // as Go's net does; a failure only costs latency
	local, remote := sockAddrs(h)
	// No operation is started on s before the owner has it.
	s.conn = newOwner((*conn)(s), local, remote)
	return s.conn, nil
}

// AdoptListener makes a listener of a duplicate of sc's socket, as one of
// Listen's.
func (e *eng) AdoptListener(sc syscall.Conn, owner engine.ListenerOwner) (engine.Listener, error) {
	s := &sock{ln: owner}
	h, err := e.adopt(sc, s, true)
	if err != nil {
		return nil, err
	}
	s.laddr, _ = sockAddrs(h)
	return (*listener)(s), nil
}
