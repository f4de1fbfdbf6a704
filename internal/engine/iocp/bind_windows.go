package iocp

import (
	"net"
	"strings"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/sockopt"
)

// boundSocket opens an overlapped socket of type sotype and protocol
// proto, bound to ip:port (zone) as Go's net binds one for network ("tcp",
// "tcp4", "tcp6", "udp"...): a family-less network on an unspecified
// address binds [::] taking IPv4 too, or IPv4 alone where there is no
// IPv6. It returns the socket and its family.
func (e *eng) boundSocket(network string, ip net.IP, port int, zone string, sotype, proto int32) (windows.Handle, int32, error) {
	ip4 := ip.To4()
	family := int32(windows.AF_INET6)
	dual := false
	switch {
	case strings.HasSuffix(network, "4") || (ip4 != nil && !strings.HasSuffix(network, "6")):
		family = windows.AF_INET
	case !strings.HasSuffix(network, "6") && (ip == nil || ip.IsUnspecified()):
		dual = true
	}
	if family == windows.AF_INET && ip != nil && ip4 == nil {
		return 0, 0, &net.AddrError{Err: "not an IPv4 address", Addr: ip.String()}
	}
	const flags = windows.WSA_FLAG_OVERLAPPED | windows.WSA_FLAG_NO_HANDLE_INHERIT
	h, err := windows.WSASocket(family, sotype, proto, nil, 0, flags)
	if err != nil && dual {
		family, dual = windows.AF_INET, false // no IPv6 here
		h, err = windows.WSASocket(family, sotype, proto, nil, 0, flags)
	}
	if err != nil {
		return 0, 0, sockopt.WinError("wsasocket", err)
	}
	var sa windows.Sockaddr
	if family == windows.AF_INET {
		a := &windows.SockaddrInet4{Port: port}
		if ip4 != nil {
			copy(a.Addr[:], ip4)
		}
		sa = a
	} else {
		a := &windows.SockaddrInet6{Port: port}
		if ip != nil {
			copy(a.Addr[:], ip.To16())
		}
		if zone != "" {
			if ifi, err := net.InterfaceByName(zone); err == nil {
				a.ZoneId = uint32(ifi.Index)
			}
		}
		sa = a
		if dual {
			windows.SetsockoptInt(h, windows.IPPROTO_IPV6, windows.IPV6_V6ONLY, 0)
		}
	}
	if err := windows.Bind(h, sa); err != nil {
		e.closesocket(h)
		return 0, 0, sockopt.WinError("bind", err)
	}
	return h, family, nil
}
