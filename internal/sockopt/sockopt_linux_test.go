package sockopt

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestListenTCP(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		family        int
		v6only        int // -1: not IPv6
	}{
		{"tcp4", "127.0.0.1:0", unix.AF_INET, -1},
		{"tcp4", ":0", unix.AF_INET, -1},
		{"tcp", "127.0.0.1:0", unix.AF_INET, -1},
		{"tcp", ":0", unix.AF_INET6, 0}, // dual stack, as net.Listen
		{"tcp", "0.0.0.0:0", unix.AF_INET6, 0},
		{"tcp6", ":0", unix.AF_INET6, 1},
		{"tcp6", "[::1]:0", unix.AF_INET6, 1},
	} {
		la, err := net.ResolveTCPAddr(tc.network, tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		fd, bound, err := ListenTCP(tc.network, la, 128)
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL) {
			t.Logf("%s %s: %v (no IPv6 here?)", tc.network, tc.addr, err)
			continue
		}
		if err != nil {
			t.Fatalf("%s %s: %v", tc.network, tc.addr, err)
		}
		if bound.Port == 0 {
			t.Errorf("%s %s: bound to port 0", tc.network, tc.addr)
		}
		if dom, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); dom != tc.family {
			t.Errorf("%s %s: family %d; want %d", tc.network, tc.addr, dom, tc.family)
		}
		if tc.v6only >= 0 {
			if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); v != tc.v6only {
				t.Errorf("%s %s: IPV6_V6ONLY %d; want %d", tc.network, tc.addr, v, tc.v6only)
			}
		}
		if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s %s: blocking", tc.network, tc.addr)
		}
		unix.Close(fd)
	}
}

func TestListenTCPErrors(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, _, err := ListenTCP("tcp4", ln.Addr().(*net.TCPAddr), 128); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listening on a used address: %v; want EADDRINUSE", err)
	}
	if _, _, err := ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv6loopback}, 128); err == nil {
		t.Error("tcp4 on an IPv6 address succeeded")
	}
	if _, _, err := ListenTCP("udp", &net.TCPAddr{}, 128); err == nil {
		t.Error("udp succeeded")
	}
}

func TestTCPAddr(t *testing.T) {
	a := TCPAddr(&unix.SockaddrInet4{Port: 80, Addr: [4]byte{10, 1, 2, 3}})
	if a.String() != "10.1.2.3:80" || len(a.IP) != net.IPv4len {
		t.Errorf("IPv4: %v (IP of %d bytes)", a, len(a.IP))
	}
	b := TCPAddr(&unix.SockaddrInet6{Port: 443, Addr: [16]byte{15: 1}})
	if b.String() != "[::1]:443" {
		t.Errorf("IPv6: %v", b)
	}
	if !SameAddr(a, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 80}) || SameAddr(a, b) || SameAddr(a, nil) {
		t.Error("SameAddr")
	}
	if TCPAddr(&unix.SockaddrUnix{Name: "x"}) != nil {
		t.Error("a Unix address converted")
	}
	if n := testing.AllocsPerRun(100, func() { TCPAddr(&unix.SockaddrInet4{}) }); n > 2 {
		t.Errorf("%v allocations per conversion", n)
	}
}

// TestDialSockaddr: the addresses a dial hands connect(2), read back (the
// length included: a path's NUL, none after an abstract name), and the
// ones refused.
func TestDialSockaddr(t *testing.T) {
	for _, tc := range []struct {
		addr   net.Addr
		family int
		want   unix.Sockaddr
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}, unix.AF_INET, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{127, 0, 0, 1}}},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3).To4(), Port: 65535}, unix.AF_INET, &unix.SockaddrInet4{Port: 65535, Addr: [4]byte{10, 1, 2, 3}}},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, unix.AF_INET6, &unix.SockaddrInet6{Port: 8080, Addr: [16]byte{15: 1}}},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "1"}, unix.AF_INET6, &unix.SockaddrInet6{Port: 1, ZoneId: 1, Addr: [16]byte{0: 0xfe, 1: 0x80, 15: 1}}},
		{&net.UnixAddr{Name: "/tmp/s", Net: "unix"}, unix.AF_UNIX, &unix.SockaddrUnix{Name: "/tmp/s"}},
		{&net.UnixAddr{Name: "@abstract", Net: "unix"}, unix.AF_UNIX, &unix.SockaddrUnix{Name: "@abstract"}},
	} {
		var raw unix.RawSockaddrAny
		family, n, err := DialSockaddr(tc.addr, &raw)
		if err != nil {
			t.Errorf("%v: %v", tc.addr, err)
			continue
		}
		if family != tc.family {
			t.Errorf("%v: family %d; want %d", tc.addr, family, tc.family)
		}
		// Read back, as the kernel reads it: the family's structure, of
		// the length it is told.
		got, err := anyToSockaddr(&raw, n)
		if err != nil {
			t.Errorf("%v: converting back: %v", tc.addr, err)
			continue
		}
		if !sameSockaddr(got, tc.want) {
			t.Errorf("%v: sockaddr %#v; want %#v", tc.addr, got, tc.want)
		}
	}
	long := "/" + string(make([]byte, 200))
	for _, a := range []net.Addr{
		&net.UnixAddr{Name: "", Net: "unix"},
		&net.UnixAddr{Name: long, Net: "unix"},
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 70000},
		&net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 1},
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
	} {
		var raw unix.RawSockaddrAny
		if _, _, err := DialSockaddr(a, &raw); err == nil {
			t.Errorf("%v: no error; want one", a)
		}
	}
}

// anyToSockaddr reads back what DialSockaddr wrote, n bytes of raw.
func anyToSockaddr(raw *unix.RawSockaddrAny, n uint32) (unix.Sockaddr, error) {
	switch raw.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		if n != unix.SizeofSockaddrInet4 {
			return nil, syscall.EINVAL
		}
		return &unix.SockaddrInet4{Port: ntohs(in.Port), Addr: in.Addr}, nil
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
		if n != unix.SizeofSockaddrInet6 {
			return nil, syscall.EINVAL
		}
		return &unix.SockaddrInet6{Port: ntohs(in.Port), ZoneId: in.Scope_id, Addr: in.Addr}, nil
	case unix.AF_UNIX:
		in := (*unix.RawSockaddrUnix)(unsafe.Pointer(raw))
		plen := int(n) - int(unsafe.Offsetof(in.Path))
		b := make([]byte, 0, plen)
		for i := range plen {
			b = append(b, byte(in.Path[i]))
		}
		if len(b) > 0 && b[0] == 0 {
			b[0] = '@' // abstract: no NUL after it
		} else if len(b) > 0 && b[len(b)-1] == 0 {
			b = b[:len(b)-1] // a path's NUL
		} else {
			return nil, syscall.EINVAL
		}
		return &unix.SockaddrUnix{Name: string(b)}, nil
	}
	return nil, syscall.EAFNOSUPPORT
}

func sameSockaddr(a, b unix.Sockaddr) bool {
	switch a := a.(type) {
	case *unix.SockaddrInet4:
		b, ok := b.(*unix.SockaddrInet4)
		return ok && a.Port == b.Port && a.Addr == b.Addr
	case *unix.SockaddrInet6:
		b, ok := b.(*unix.SockaddrInet6)
		return ok && a.Port == b.Port && a.Addr == b.Addr && a.ZoneId == b.ZoneId
	case *unix.SockaddrUnix:
		b, ok := b.(*unix.SockaddrUnix)
		return ok && a.Name == b.Name
	}
	return false
}

// TestConnectResult: a connect in progress to a listener, and one to a
// closed port, each read with ConnectResult once writable.
func TestConnectResult(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr()
	closed.Close()
	for _, tc := range []struct {
		addr net.Addr
		want error
	}{{ln.Addr(), nil}, {refused, unix.ECONNREFUSED}} {
		var raw unix.RawSockaddrAny
		family, n, err := DialSockaddr(tc.addr, &raw)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = Connect(fd, &raw, n)
		if err == unix.EINPROGRESS {
			// Wait until it is writable (or failed), then ask.
			for {
				fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
				if _, err := unix.Poll(fds, 30_000); err != unix.EINTR {
					break
				}
			}
			var done bool
			done, err = ConnectResult(fd)
			if !done {
				t.Errorf("%v: ConnectResult not done once writable", tc.addr)
			}
		}
		unix.Close(fd)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("connect to %v: %v; want %v", tc.addr, err, tc.want)
		}
	}
}
