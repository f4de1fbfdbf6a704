package cport_test

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// fullListenerOS opens a loopback listener with a backlog of one (listen(2)
// with 0) and fills it with a connection never accepted: Linux then drops
// the SYNs of further connects, which stay in progress.
func fullListenerOS(t *testing.T) (string, bool) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	filler, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatalf("filling the listener's queue: %v", err)
	}
	t.Cleanup(func() { filler.Close() })
	return addr, true
}
