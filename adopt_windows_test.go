package cport_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/windows"

	"cport.dev/cport"
)

// rawSocket is a socket handle that Go's runtime does not hold, as a
// process is handed one across a restart, made a syscall.Conn.
type rawSocket windows.Handle

func (s rawSocket) SyscallConn() (syscall.RawConn, error) { return rawConn(s), nil }

type rawConn windows.Handle

func (c rawConn) Control(f func(fd uintptr)) error  { f(uintptr(c)); return nil }
func (c rawConn) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (c rawConn) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

// newRawSocket opens an overlapped TCP socket over IPv4 with Winsock
// itself, closed when the test ends.
func newRawSocket(t *testing.T) windows.Handle {
	t.Helper()
	h, err := windows.WSASocket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP, nil, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
	if err != nil {
		t.Fatalf("WSASocket: %v", err)
	}
	t.Cleanup(func() { windows.Closesocket(h) })
	return h
}

// TestAdoptIOCPRawSocket: the iocp engine adopts a listening socket and a
// connected one that Go's runtime does not hold (a duplicate of each,
// WSADuplicateSocket), and refuses those of Go's net with an error naming
// it: their association with the runtime's completion port is shared by
// every duplicate.
func TestAdoptIOCPRawSocket(t *testing.T) {
	p := openPort(t, "iocp")
	s := collect(t, p, 2)

	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if _, err := p.AdoptListener(nl.(*net.TCPListener), 1); !errors.Is(err, cport.ErrUnsupported) || !strings.Contains(err.Error(), "iocp") {
		t.Fatalf("AdoptListener of Go's listener on iocp = %v; want ErrUnsupported naming iocp", err)
	}

	// A listener.
	lh := newRawSocket(t)
	if err := windows.Bind(lh, &windows.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := windows.Listen(lh, 16); err != nil {
		t.Fatalf("listen: %v", err)
	}
	l, err := p.AdoptListener(rawSocket(lh), 21)
	if err != nil {
		t.Fatalf("AdoptListener of a raw socket: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	windows.Closesocket(lh) // the caller's: the port's duplicate listens on
	conn, peer := acceptAdopted(t, s, l, func() net.Conn { return dialOne(t, l.Addr()) })
	exchangeNet(t, s, conn, peer)

	// A connection, dialed (a blocking connect) to Go's listener.
	ch := acceptNet(t, nl)
	ch2 := newRawSocket(t)
	ta := nl.Addr().(*net.TCPAddr)
	if err := windows.Connect(ch2, &windows.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: ta.Port}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	c2, err := p.AdoptConn(rawSocket(ch2), 22)
	if err != nil {
		t.Fatalf("AdoptConn of a raw socket: %v", err)
	}
	t.Cleanup(func() { c2.Close() })
	windows.Closesocket(ch2)
	peer2 := takeNet(t, ch)
	if c2.RemoteAddr().String() != nl.Addr().String() {
		t.Errorf("adopted Conn's RemoteAddr %v; want %v", c2.RemoteAddr(), nl.Addr())
	}
	exchangeNet(t, s, c2, peer2)

	// A listener as a connection, and the reverse.
	lh3 := newRawSocket(t)
	windows.Bind(lh3, &windows.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	windows.Listen(lh3, 1)
	if _, err := p.AdoptConn(rawSocket(lh3), 1); err == nil || !strings.Contains(err.Error(), "listening") {
		t.Errorf("AdoptConn of a listening socket = %v; want an error saying it listens", err)
	}
}
