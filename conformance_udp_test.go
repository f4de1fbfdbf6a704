package cport_test

// Datagram sockets (Port.ListenPacket), on every engine: receives and
// sends complete with the peer's address.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
)

// listenPacket opens a datagram socket of p, closed when the test ends.
// Every engine has UDP; the portable one's is Go's net's, which Wine 8
// lacks (see udpClient): skipped there.
func listenPacket(t testing.TB, p *cport.Port, network, address string, key uint64) *cport.PacketConn {
	t.Helper()
	pc, err := p.ListenPacket(network, address, key)
	if err != nil && p.Backend() == "portable" && runtime.GOOS == "windows" && strings.Contains(err.Error(), "wsaioctl") {
		t.Skipf("Go's net has no UDP here: %v", err)
	}
	if err != nil {
		t.Fatalf("ListenPacket(%q, %q): %v", network, address, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func udpAddr(t testing.TB, pc *cport.PacketConn) netip.AddrPort {
	t.Helper()
	ua, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok || ua.Port == 0 {
		t.Fatalf("LocalAddr() = %v; want a bound *net.UDPAddr", pc.LocalAddr())
	}
	return ua.AddrPort()
}

// udpClient opens a Go UDP socket on host, closed when the test ends. Go's
// net cannot make one under Wine 8 (it turns ICMP reports off with
// SIO_UDP_CONNRESET, which Wine refuses): the test is skipped there, and
// TestConformanceUDPPair, with no Go socket, stands for it.
func udpClient(t testing.TB, network, host string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil && runtime.GOOS == "windows" && strings.Contains(err.Error(), "wsaioctl") {
		t.Skipf("Go's net has no UDP here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// sendTo sends msg from pc to addr, its completion left to the sink.
func sendTo(t testing.TB, pc *cport.PacketConn, addr netip.AddrPort, msg []byte) {
	t.Helper()
	m := cport.MsgOf(msg)
	defer m.Release()
	if err := pc.SendTo(m, addr, 0); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
}

// roundTrip sends msg from c to dst and reads the echo, sending again
// should a datagram be lost (UDP may drop on a loaded host).
func roundTrip(t testing.TB, c *net.UDPConn, dst netip.AddrPort, msg []byte) {
	t.Helper()
	buf := make([]byte, len(msg)+1)
	deadline := time.Now().Add(longWait)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDPAddrPort(msg, dst); err != nil {
			t.Fatalf("client write: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue // lost: send again
		}
		if from.Port() != dst.Port() || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("client read %q from %v; want %q from %v", buf[:n], from, msg, dst)
		}
		return
	}
	t.Fatalf("no echo of %q within %v", msg, longWait)
}

// echoPackets starts workers that echo every datagram of p back to its
// sender, recording the sender of each payload and counting the sends.
type echoRecord struct {
	mu      sync.Mutex
	senders map[string]netip.AddrPort
	sent    map[netip.AddrPort]int
	ends    []cport.Completion
}

func echoPackets(t testing.TB, p *cport.Port) *echoRecord {
	t.Helper()
	rec := &echoRecord{senders: make(map[string]netip.AddrPort), sent: make(map[netip.AddrPort]int)}
	errorf := limitErrors(t)
	runWorkers(t, p, 2, 4, func(c *cport.Completion) {
		switch c.Op {
		case cport.OpRecvFrom:
			if c.Err != nil {
				rec.mu.Lock()
				rec.ends = append(rec.ends, *c)
				rec.mu.Unlock()
				return
			}
			if c.Packet == nil || c.Conn != nil || len(c.Buf) != c.N {
				errorf("recvfrom completion %s: Packet %v, Conn %v, Buf of %d", describe(c), c.Packet, c.Conn, len(c.Buf))
			}
			rec.mu.Lock()
			rec.senders[string(c.Buf)] = c.Addr
			rec.mu.Unlock()
			m := cport.MsgOf(c.Buf)
			if err := c.Packet.SendTo(m, c.Addr, 2); err != nil {
				errorf("SendTo: %v", err)
			}
			m.Release()
			c.Release()
		case cport.OpSendTo:
			if c.Err != nil {
				errorf("sendto completion: %s", describe(c))
			}
			rec.mu.Lock()
			rec.sent[c.Addr]++
			rec.mu.Unlock()
		}
	})
	return rec
}

// TestConformanceUDPEcho: 100 datagrams from two clients echoed by a
// multishot receive, each completion carrying its sender, each echo's
// send completing with its destination.
func TestConformanceUDPEcho(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		pc := listenPacket(t, p, "udp", "127.0.0.1:0", 7)
		dst := udpAddr(t, pc)
		if pc.Key() != 7 {
			t.Errorf("Key() = %d; want 7", pc.Key())
		}
		rec := echoPackets(t, p)
		if err := pc.RecvFromMulti(1); err != nil {
			t.Fatalf("RecvFromMulti: %v", err)
		}
		if err := pc.RecvFrom(1); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("RecvFrom during RecvFromMulti: %v; want ErrBusy", err)
		}
		clients := []*net.UDPConn{udpClient(t, "udp4", "127.0.0.1"), udpClient(t, "udp4", "127.0.0.1")}
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Go(func() {
				for j := range 50 {
					roundTrip(t, c, dst, fmt.Appendf(nil, "client %d datagram %d", i, j))
				}
			})
		}
		wg.Wait()
		for i, c := range clients {
			want := c.LocalAddr().(*net.UDPAddr).AddrPort()
			// A send's completion may come after its datagram has.
			eventually(t, fmt.Sprintf("50 sends to %v to complete", want), func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return rec.sent[want] >= 50
			})
			rec.mu.Lock()
			for j := range 50 {
				msg := fmt.Sprintf("client %d datagram %d", i, j)
				if got := rec.senders[msg]; got != want {
					t.Errorf("%q came from %v; want %v", msg, got, want)
				}
			}
			rec.mu.Unlock()
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.ends) > 0 {
			t.Errorf("the receive ended: %s", describe(&rec.ends[0]))
		}
	})
}

// TestConformanceUDP6: a datagram socket on ::1, its single receives
// completing with IPv6 senders. Skipped where the host has no IPv6.
func TestConformanceUDP6(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback, or no UDP in Go's net: %v", err)
	} else {
		c.Close()
	}
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		pc := listenPacket(t, p, "udp6", "[::1]:0", 1)
		dst := udpAddr(t, pc)
		s := collect(t, p, 1)
		client := udpClient(t, "udp6", "::1")
		from := client.LocalAddr().(*net.UDPAddr).AddrPort()
		for i := range 3 {
			if err := pc.RecvFrom(uint64(i)); err != nil {
				t.Fatalf("RecvFrom: %v", err)
			}
			msg := fmt.Appendf(nil, "six %d", i)
			if _, err := client.WriteToUDPAddrPort(msg, dst); err != nil {
				t.Fatal(err)
			}
			c := s.take(t, "recvfrom", isOp(cport.OpRecvFrom))
			if c.Err != nil || !bytes.Equal(c.Buf, msg) || c.Addr != from || c.Tag != uint64(i) || c.Key != 1 {
				t.Fatalf("recvfrom %s %q from %v; want %q from %v", describe(&c), c.Buf, c.Addr, msg, from)
			}
			c.Release()
		}
		// A multishot receive on IPv6 too (uring's sockaddr in its buffers).
		if err := pc.RecvFromMulti(30); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := fmt.Appendf(nil, "multi six %d", i)
			if _, err := client.WriteToUDPAddrPort(msg, dst); err != nil {
				t.Fatal(err)
			}
			c := s.take(t, "recvfrom", isOp(cport.OpRecvFrom))
			if c.Err != nil || !bytes.Equal(c.Buf, msg) || c.Addr != from || c.Tag != 30 {
				t.Fatalf("multishot recvfrom %s %q from %v; want %q from %v", describe(&c), c.Buf, c.Addr, msg, from)
			}
			c.Release()
		}
		m := cport.MsgOf([]byte("back"))
		defer m.Release()
		if err := pc.SendTo(m, from, 9); err != nil {
			t.Fatal(err)
		}
		c := s.take(t, "sendto", isOp(cport.OpSendTo))
		if c.Err != nil || c.N != 4 || c.Addr != from || c.Tag != 9 {
			t.Fatalf("sendto completion %s to %v", describe(&c), c.Addr)
		}
		buf := make([]byte, 16)
		client.SetReadDeadline(time.Now().Add(longWait))
		if n, src, err := client.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "back" || src != dst {
			t.Fatalf("client read %q from %v, %v; want \"back\" from %v", buf[:n], src, err, dst)
		}
	})
}

// TestConformanceUDPErrors: a datagram too long fails its send with
// EMSGSIZE and the socket goes on; a send to a closed port completes (an
// unconnected socket hears of no ICMP error), and neither ends the
// socket's receive.
func TestConformanceUDPErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		pc := listenPacket(t, p, "udp4", "127.0.0.1:0", 1)
		dst := udpAddr(t, pc)
		s := collect(t, p, 1)
		if err := pc.RecvFromMulti(5); err != nil {
			t.Fatal(err)
		}

		big := cport.NewMsg(70000)
		defer big.Release()
		if err := pc.SendTo(big, dst, 1); err != nil {
			t.Fatal(err)
		}
		c := s.take(t, "sendto of 70000 bytes", isOp(cport.OpSendTo))
		if !errors.Is(c.Err, syscall.EMSGSIZE) || c.N != 70000 || c.Tag != 1 {
			t.Errorf("sendto of 70000 bytes: %s; want an error matching EMSGSIZE", describe(&c))
		}

		gone := listenPacket(t, p, "udp4", "127.0.0.1:0", 2)
		closed := udpAddr(t, gone)
		gone.Close()
		m := cport.MsgOf([]byte("nobody"))
		defer m.Release()
		for i := range 3 {
			if err := pc.SendTo(m, closed, 2); err != nil {
				t.Fatal(err)
			}
			c = s.take(t, "sendto a closed port", isOp(cport.OpSendTo))
			if c.Err != nil || c.N != 6 || c.Addr != closed {
				t.Errorf("sendto %d a closed port: %s; want it sent", i, describe(&c))
			}
		}

		peer := listenPacket(t, p, "udp4", "127.0.0.1:0", 3)
		sendTo(t, peer, dst, []byte("still there"))
		c = s.take(t, "recvfrom", isOp(cport.OpRecvFrom))
		if c.Err != nil || string(c.Buf) != "still there" || c.Addr != udpAddr(t, peer) {
			t.Errorf("recvfrom after the failed sends: %s %q from %v", describe(&c), c.Buf, c.Addr)
		}
		c.Release()
	})
}

// TestConformanceUDPClose: Close ends a pending receive, single or
// multishot (after the release of its completion out), with ErrCanceled;
// calls after it fail with ErrClosed; closing twice is harmless; the
// port's Close closes the sockets still open.
func TestConformanceUDPClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)

		pc := listenPacket(t, p, "udp", "127.0.0.1:0", 1)
		if err := pc.RecvFrom(5); err != nil {
			t.Fatal(err)
		}
		if err := pc.RecvFrom(5); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("a second RecvFrom: %v; want ErrBusy", err)
		}
		if err := pc.Close(); err != nil {
			t.Fatal(err)
		}
		c := s.take(t, "recvfrom ended by Close", isOp(cport.OpRecvFrom))
		if !errors.Is(c.Err, cport.ErrCanceled) || !errors.Is(c.Err, net.ErrClosed) || c.Tag != 5 {
			t.Errorf("recvfrom ended by Close: %s; want ErrCanceled", describe(&c))
		}
		m := cport.MsgOf([]byte("x"))
		defer m.Release()
		if err := pc.SendTo(m, netip.MustParseAddrPort("127.0.0.1:9"), 1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("SendTo after Close: %v; want ErrClosed", err)
		}
		if err := pc.RecvFrom(1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("RecvFrom after Close: %v; want ErrClosed", err)
		}
		if err := pc.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}

		multi := listenPacket(t, p, "udp", "127.0.0.1:0", 2)
		if err := multi.RecvFromMulti(6); err != nil {
			t.Fatal(err)
		}
		peer := listenPacket(t, p, "udp4", "127.0.0.1:0", 9)
		sendTo(t, peer, udpAddr(t, multi), []byte("held"))
		held := s.take(t, "recvfrom", isOp(cport.OpRecvFrom))
		if held.Err != nil || string(held.Buf) != "held" {
			t.Fatalf("recvfrom: %s %q", describe(&held), held.Buf)
		}
		multi.Close()
		s.none(t, "the end of a receive whose completion is out", isOp(cport.OpRecvFrom))
		held.Release()
		c = s.take(t, "recvfrom ended by Close", isOp(cport.OpRecvFrom))
		if !errors.Is(c.Err, cport.ErrCanceled) || c.Tag != 6 {
			t.Errorf("multishot recvfrom ended by Close: %s; want ErrCanceled", describe(&c))
		}

		open := listenPacket(t, p, "udp", "127.0.0.1:0", 3)
		if err := open.RecvFromMulti(7); err != nil {
			t.Fatal(err)
		}
		p.Close()
		if err := open.RecvFrom(1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("RecvFrom after the port's Close: %v; want ErrClosed", err)
		}
		if _, err := p.ListenPacket("udp", "127.0.0.1:0", 1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("ListenPacket on a closed port: %v; want ErrClosed", err)
		}
	})
}

// TestConformanceUDPNetwork: ListenPacket refuses what is not UDP, and
// buffers with no room for a datagram.
func TestConformanceUDPNetwork(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		if rf, st := cport.OpRecvFrom.String(), cport.OpSendTo.String(); rf != "recvfrom" || st != "sendto" {
			t.Errorf("the ops are named %q and %q; want recvfrom and sendto", rf, st)
		}
		if _, err := p.ListenPacket("tcp", "127.0.0.1:0", 1); err == nil || !strings.Contains(err.Error(), "want udp") {
			t.Errorf("ListenPacket(tcp): %v; want an error naming the networks", err)
		}
		small := openPort(t, b, cport.Config{RecvBufferSize: 64})
		if _, err := small.ListenPacket("udp", "127.0.0.1:0", 1); err == nil || !strings.Contains(err.Error(), "RecvBufferSize 64") {
			t.Errorf("ListenPacket with buffers of 64 bytes: %v; want an error naming RecvBufferSize", err)
		}
	})
}

// TestConformanceUDPHeld: while a multishot receive's completion is held,
// the datagrams that come wait (in the port, then in the socket's buffer,
// the engine stopped), and follow in order, one per release.
func TestConformanceUDPHeld(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		pc := listenPacket(t, p, "udp4", "127.0.0.1:0", 1)
		if err := pc.RecvFromMulti(3); err != nil {
			t.Fatal(err)
		}
		peer := listenPacket(t, p, "udp4", "127.0.0.1:0", 9)
		const n = 40
		for i := range n {
			sendTo(t, peer, udpAddr(t, pc), fmt.Appendf(nil, "%d", i))
		}
		for i := range n {
			c := s.take(t, "recvfrom", isOp(cport.OpRecvFrom))
			if c.Err != nil || string(c.Buf) != fmt.Sprint(i) {
				t.Fatalf("datagram %d: %s %q", i, describe(&c), c.Buf)
			}
			if i == 0 {
				// Held while the rest come: an absence check.
				s.none(t, "a second recvfrom before the release", isOp(cport.OpRecvFrom))
			}
			c.Release()
		}
	})
}

// TestConformanceUDPPair: two sockets of the port talk to each other, with
// no Go socket involved: 50 datagrams each way, a multishot receive on one
// side and single receives on the other, every sender and destination
// checked, then an empty datagram and one too long for a buffer.
func TestConformanceUDPPair(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const bufSize = 1024
		p := openPort(t, b, cport.Config{RecvBufferSize: bufSize})
		s := collect(t, p, 2)
		a := listenPacket(t, p, "udp4", "127.0.0.1:0", 1)
		z := listenPacket(t, p, "udp", "127.0.0.1:0", 2)
		aAddr, zAddr := udpAddr(t, a), udpAddr(t, z)
		if err := z.RecvFromMulti(20); err != nil {
			t.Fatal(err)
		}
		const n = 50
		for i := range n {
			if err := a.RecvFrom(10); err != nil {
				t.Fatal(err)
			}
			m := cport.MsgOf(fmt.Appendf(nil, "ping %d", i))
			if err := a.SendTo(m, zAddr, 11); err != nil {
				t.Fatal(err)
			}
			m.Release()
			c := s.take(t, "the ping's recvfrom", func(c *cport.Completion) bool { return c.Op == cport.OpRecvFrom && c.Key == 2 })
			if c.Err != nil || string(c.Buf) != fmt.Sprintf("ping %d", i) || c.Addr != aAddr || c.Packet != z || c.Tag != 20 {
				t.Fatalf("ping %d: %s %q from %v; want it from %v", i, describe(&c), c.Buf, c.Addr, aAddr)
			}
			reply := cport.MsgOf(fmt.Appendf(nil, "pong %d", i))
			if err := z.SendTo(reply, c.Addr, 21); err != nil {
				t.Fatal(err)
			}
			reply.Release()
			c.Release()
			c = s.take(t, "the pong's recvfrom", func(c *cport.Completion) bool { return c.Op == cport.OpRecvFrom && c.Key == 1 })
			if c.Err != nil || string(c.Buf) != fmt.Sprintf("pong %d", i) || c.Addr != zAddr || c.Tag != 10 {
				t.Fatalf("pong %d: %s %q from %v; want it from %v", i, describe(&c), c.Buf, c.Addr, zAddr)
			}
			c.Release()
		}
		for _, want := range []struct {
			key  uint64
			addr netip.AddrPort
		}{{1, zAddr}, {2, aAddr}} {
			for range n {
				c := s.take(t, "sendto", func(c *cport.Completion) bool { return c.Op == cport.OpSendTo && c.Key == want.key })
				if c.Err != nil || c.Addr != want.addr || c.N < len("ping 0") {
					t.Fatalf("sendto: %s to %v; want it sent to %v", describe(&c), c.Addr, want.addr)
				}
			}
		}
		long := bytes.Repeat([]byte("x"), 2000)
		for _, msg := range [][]byte{{}, long} {
			if err := a.RecvFrom(12); err != nil {
				t.Fatal(err)
			}
			m := cport.MsgOf(msg)
			if err := z.SendTo(m, aAddr, 22); err != nil {
				t.Fatal(err)
			}
			m.Release()
			c := s.take(t, "recvfrom", func(c *cport.Completion) bool { return c.Op == cport.OpRecvFrom && c.Key == 1 })
			want := msg[:min(len(msg), bufSize-64)]
			if c.Err != nil || !bytes.Equal(c.Buf, want) || c.Addr != zAddr {
				t.Errorf("recvfrom of %d bytes: %s, %d bytes from %v; want %d from %v", len(msg), describe(&c), len(c.Buf), c.Addr, len(want), zAddr)
			}
			c.Release()
		}
	})
}

// TestConformanceUDPHandler: on a port run to completion (Config.Handler)
// an echo's SendTo and the next RecvFrom are made from the handler, on
// the engine's own goroutine: 30 round trips between two of its sockets.
func TestConformanceUDPHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		echoes := make(chan string, 1)
		errorf := limitErrors(t)
		handler := func(c cport.Completion) {
			switch {
			case c.Op == cport.OpRecvFrom && c.Err == nil && c.Key == 1: // the server: echo
				m := cport.MsgOf(c.Buf)
				if err := c.Packet.SendTo(m, c.Addr, 0); err != nil {
					errorf("SendTo in the handler: %v", err)
				}
				m.Release()
				c.Release()
			case c.Op == cport.OpRecvFrom && c.Err == nil && c.Key == 2: // the client
				echoes <- string(c.Buf)
				c.Release()
			case c.Op == cport.OpRecvFrom && !errors.Is(c.Err, cport.ErrCanceled):
				errorf("recvfrom: %s", describe(&c))
			case c.Op == cport.OpSendTo && c.Err != nil && !errors.Is(c.Err, cport.ErrCanceled):
				errorf("sendto: %s", describe(&c))
			}
		}
		p := openPort(t, b, cport.Config{Handler: handler})
		server := listenPacket(t, p, "udp", "127.0.0.1:0", 1)
		client := listenPacket(t, p, "udp", "127.0.0.1:0", 2)
		if err := server.RecvFromMulti(0); err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			if err := client.RecvFrom(0); err != nil {
				t.Fatal(err)
			}
			msg := fmt.Sprintf("round %d", i)
			sendTo(t, client, udpAddr(t, server), []byte(msg))
			select {
			case got := <-echoes:
				if got != msg {
					t.Fatalf("echo %q; want %q", got, msg)
				}
			case <-time.After(longWait):
				t.Fatalf("no echo of %q within %v", msg, longWait)
			}
		}
	})
}
