package sockopt

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestAdoptRefusals: what is not a connected or listening TCP or Unix
// stream socket is refused, with no descriptor left open.
func TestAdoptRefusals(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	regular, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	// A TCP socket neither listening nor connected.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fresh := os.NewFile(uintptr(fd), "fresh")
	defer fresh.Close()
	seq, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	seqf := os.NewFile(uintptr(seq), "seqpacket")
	defer seqf.Close()
	cf, err := os.Create(filepath.Join(t.TempDir(), "c"))
	if err != nil {
		t.Fatal(err)
	}
	cf.Close()

	before := openFDs(t)
	for _, tc := range []struct {
		what   string
		sc     syscall.Conn
		listen bool
		want   string
		// notStream: the error matches ErrNotStream.
		notStream bool
	}{
		{"UDP", udp.(*net.UDPConn), false, "IPv4 datagram socket", true},
		{"UDP as a listener", udp.(*net.UDPConn), true, "IPv4 datagram socket", true},
		{"a seqpacket socket", seqf, false, "Unix seqpacket socket", true},
		{"a regular file", regular, false, "socket operation on non-socket", true},
		{"a listener as a connection", ln.(*net.TCPListener), false, "a listening socket", false},
		{"an unconnected socket", fresh, false, "getpeername", false},
		{"an unconnected socket as a listener", fresh, true, "not a listening socket", false},
		{"a closed file", cf, false, "closed", false},
	} {
		a, err := Adopt(tc.sc, tc.listen)
		if err == nil {
			unix.Close(a.FD)
			t.Errorf("Adopt(%s) = %+v; want an error", tc.what, a)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Adopt(%s) = %v; want an error saying %q", tc.what, err, tc.want)
		}
		if errors.Is(err, ErrNotStream) != tc.notStream {
			t.Errorf("Adopt(%s) = %v; errors.Is(err, ErrNotStream) should be %v", tc.what, err, tc.notStream)
		}
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after the refusals; %d before", after, before)
	}
}

// TestAdoptDetached: an adopted connection's duplicate is non-blocking and
// close-on-exec, distinct from the caller's, and Detached's duplicate of
// it works as a net.Conn.
func TestAdoptDetached(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a, err := Adopt(srv.(*net.TCPConn), false)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	fl, err := unix.FcntlInt(uintptr(a.FD), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("adopted descriptor's flags %#x, %v; want O_NONBLOCK", fl, err)
	}
	fdfl, err := unix.FcntlInt(uintptr(a.FD), unix.F_GETFD, 0)
	if err != nil || fdfl&unix.FD_CLOEXEC == 0 {
		t.Errorf("adopted descriptor's FD flags %#x, %v; want FD_CLOEXEC", fdfl, err)
	}
	if a.Listen || a.Local.String() != cl.RemoteAddr().String() || a.Remote.String() != cl.LocalAddr().String() {
		t.Errorf("Adopted %+v; want a connection %v -> %v", a, cl.RemoteAddr(), cl.LocalAddr())
	}
	f, err := Detached(a.FD, "detached")
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(a.FD)
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := cl.Read(b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v; want \"hi\"", b, err)
	}
}
