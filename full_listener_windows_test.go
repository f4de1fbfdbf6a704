package cport_test

import (
	"net"
	"testing"

	"golang.org/x/sys/windows"
)

// fullListenerOS opens a loopback listener with the shortest backlog and
// fills it with a connection never accepted. Under Wine (Linux's stack)
// further connects then stay in progress, their SYNs dropped; Windows
// itself may refuse them instead, which the test takes as well.
func fullListenerOS(t *testing.T) (string, bool) {
	t.Helper()
	h, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { windows.Closesocket(h) })
	if err := windows.Bind(h, &windows.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := windows.Listen(h, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := windows.Getsockname(h)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*windows.SockaddrInet4).Port}).String()
	filler, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatalf("filling the listener's queue: %v", err)
	}
	t.Cleanup(func() { filler.Close() })
	return addr, true
}
