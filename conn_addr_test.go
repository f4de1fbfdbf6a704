package cport

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
)

// TestConnRemoteAddr: the peer's address, kept in 16 bytes and a port of
// Conn (or in laddr.other when it has no place there), comes back as the
// engine gave it, whatever its family, zone or absence.
func TestConnRemoteAddr(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct{ local, remote netip.AddrPort }{
		{ap("127.0.0.1:25000"), ap("127.0.0.2:40000")},
		{ap("[::1]:25000"), ap("[::1]:40001")},
		{ap("[::ffff:127.0.0.1]:25000"), ap("[::ffff:10.0.0.7]:40002")}, // an IPv6 socket's IPv4 peer
		{ap("[fe80::1%lo]:25000"), ap("[fe80::2%lo]:40003")},
		{ap("127.0.0.1:25000"), ap("[::ffff:127.0.0.1]:40004")}, // an IPv4 socket's peer as 16 bytes (uring's accept)
		{ap("[::1]:25000"), ap("10.1.2.3:40005")},
		{ap("127.0.0.1:25000"), netip.AddrPort{}},
		{netip.AddrPort{}, ap("127.0.0.1:40006")},
		{netip.AddrPort{}, netip.AddrPort{}},
	} {
		c := newConn(nil, nil, &localAddr{ap: tc.local}, tc.remote)
		want := tcpAddr(tc.remote)
		if tc.local.Addr().Is4() && tc.remote.Addr().Is4In6() {
			// An IPv4 socket's peer, given as 16 bytes, comes back as 4, as
			// Go's net gives it.
			want = tcpAddr(netip.AddrPortFrom(tc.remote.Addr().Unmap(), tc.remote.Port()))
		}
		if got := c.RemoteAddr(); !reflect.DeepEqual(got, want) {
			t.Errorf("local %v, remote %v: RemoteAddr = %#v; want %#v", tc.local, tc.remote, got, want)
		}
		if got, want := c.LocalAddr(), tcpAddr(tc.local); !reflect.DeepEqual(got, want) {
			t.Errorf("local %v, remote %v: LocalAddr = %#v; want %#v", tc.local, tc.remote, got, want)
		}
	}
	unix := &localAddr{other: &[2]net.Addr{&net.UnixAddr{Name: "l", Net: "unix"}, &net.UnixAddr{Name: "r", Net: "unix"}}}
	c := newConn(nil, nil, unix, netip.AddrPort{})
	if ra, ok := c.RemoteAddr().(*net.UnixAddr); !ok || ra.Name != "r" {
		t.Errorf("a Unix socket's RemoteAddr = %#v; want the *net.UnixAddr r", c.RemoteAddr())
	}
}
