package sockopt

import (
	"errors"
	"net"
	"syscall"
	"testing"

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
