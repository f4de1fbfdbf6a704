package iocp

import (
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Winsock's helpers that golang.org/x/sys/windows does not wrap.
var (
	modws2_32       = windows.NewLazySystemDLL("ws2_32.dll")
	procIoctlsocket = modws2_32.NewProc("ioctlsocket")
	procRecv        = modws2_32.NewProc("recv")

	modkernel32                     = windows.NewLazySystemDLL("kernel32.dll")
	procGetQueuedCompletionStatusEx = modkernel32.NewProc("GetQueuedCompletionStatusEx")
)

// fionbio is FIONBIO of winsock2.h: _IOW('f', 126, u_long).
const fionbio = 0x8004667e

// setNonblock puts s in non-blocking mode, for the receive drain: calls
// without an OVERLAPPED then return WSAEWOULDBLOCK instead of waiting, while
// overlapped calls are unaffected ("Overlapped sockets ... the nonblocking
// mode has no effect on overlapped operations", ioctlsocket's documentation:
// https://learn.microsoft.com/windows/win32/api/winsock/nf-winsock-ioctlsocket).
// libuv runs its TCP handles the same way.
func setNonblock(s windows.Handle) error {
	on := uint32(1)
	r, _, e := syscall.SyscallN(procIoctlsocket.Addr(), uintptr(s), fionbio, uintptr(unsafe.Pointer(&on)))
	if int32(r) != 0 {
		return e
	}
	return nil
}

// recvNonblock is recv(2) on a non-blocking socket: n bytes, 0 and nil at the
// end of the stream, or WSAEWOULDBLOCK when nothing is there.
func recvNonblock(s windows.Handle, b []byte) (int, error) {
	r, _, e := syscall.SyscallN(procRecv.Addr(), uintptr(s), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if int32(r) < 0 {
		return 0, e
	}
	return int(r), nil
}

// overlappedEntry is OVERLAPPED_ENTRY, as GetQueuedCompletionStatusEx fills
// it. ov is compared with the addresses of the OVERLAPPEDs we started, never
// turned back into a pointer.
type overlappedEntry struct {
	key      uintptr
	ov       uintptr
	internal uintptr
	qty      uint32
}

// getQueuedCompletionStatusEx dequeues up to len(ents) packets, waiting at
// most timeout milliseconds (windows.INFINITE for ever).
// https://learn.microsoft.com/windows/win32/fileio/getqueuedcompletionstatusex-func
func getQueuedCompletionStatusEx(port windows.Handle, ents []overlappedEntry, timeout uint32) (int, error) {
	var n uint32
	r, _, e := syscall.SyscallN(procGetQueuedCompletionStatusEx.Addr(), uintptr(port),
		uintptr(unsafe.Pointer(&ents[0])), uintptr(len(ents)), uintptr(unsafe.Pointer(&n)), uintptr(timeout), 0)
	if r == 0 {
		return 0, e
	}
	return int(n), nil
}

var wsaInit = sync.OnceValue(func() error {
	var d windows.WSAData
	return windows.WSAStartup(uint32(0x202), &d)
})

// skipOnSuccess says whether sockets may use FILE_SKIP_COMPLETION_PORT_ON_SUCCESS,
// decided as Go's internal/poll (fd_windows.go,
// checkSetFileCompletionNotificationModes) decides: the call must exist, and
// every TCP provider must hand out IFS handles (XP1_IFS_HANDLES), for a
// layered service provider that does not may drop the completion of an
// operation that completed at once (https://support.microsoft.com/kb/2568167).
var skipOnSuccess = sync.OnceValue(func() bool {
	if windows.LoadSetFileCompletionNotificationModes() != nil {
		return false
	}
	protos := [2]int32{windows.IPPROTO_TCP, 0}
	var buf [32]windows.WSAProtocolInfo
	size := uint32(unsafe.Sizeof(buf))
	n, err := windows.WSAEnumProtocols(&protos[0], &buf[0], &size)
	if err != nil {
		return false
	}
	for i := range n {
		if buf[i].ServiceFlags1&windows.XP1_IFS_HANDLES == 0 {
			return false
		}
	}
	return true
})

// sockaddrTCP converts a Winsock address to a *net.TCPAddr.
func sockaddrTCP(sa windows.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *windows.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *windows.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	}
	return nil
}

// sockAddrs returns a socket's local and remote addresses.
func sockAddrs(s windows.Handle) (local, remote net.Addr) {
	if sa, err := windows.Getsockname(s); err == nil {
		local = sockaddrTCP(sa)
	}
	if sa, err := windows.Getpeername(s); err == nil {
		remote = sockaddrTCP(sa)
	}
	return local, remote
}
