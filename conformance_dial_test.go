package cport_test

// Outbound connections (Port.Dial) and per-connection user data
// (Conn.SetValue), on every engine. Every address dialed is a loopback one
// (127.0.0.1, ::1) or a Unix socket in the test's temporary directory:
// nothing leaves the machine.

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
)

// dialOK dials network/address on p and takes its completion from s: it
// must carry key and tag and a connection under key, which is closed when
// the test ends.
func dialOK(t *testing.T, p *cport.Port, s *sink, network, address string, key, tag uint64) *cport.Conn {
	t.Helper()
	if err := p.Dial(network, address, key, tag); err != nil {
		t.Fatalf("Dial(%q, %q): %v", network, address, err)
	}
	c := s.take(t, "dial", func(c *cport.Completion) bool { return c.Op == cport.OpDial && c.Tag == tag })
	if c.Err != nil || c.Conn == nil {
		t.Fatalf("dial completion %s; want a connection", describe(&c))
	}
	if c.Key != key || c.Conn.Key() != key {
		t.Errorf("dial completion key %d, Conn.Key() %d; want %d", c.Key, c.Conn.Key(), key)
	}
	t.Cleanup(func() { c.Conn.Close() })
	return c.Conn
}

// recvCport receives n bytes on conn with single receives.
func recvCport(t *testing.T, s *sink, conn *cport.Conn, n int) []byte {
	t.Helper()
	var got []byte
	for len(got) < n {
		if err := conn.Recv(9); err != nil {
			t.Fatalf("Recv: %v", err)
		}
		c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
		got = append(got, c.Buf...)
		c.Release()
		if c.Err != nil {
			t.Fatalf("receive after %d of %d bytes: %v", len(got), n, c.Err)
		}
	}
	return got
}

// sendCport sends b on conn and waits for its completion.
func sendCport(t *testing.T, s *sink, conn *cport.Conn, b []byte) {
	t.Helper()
	m := cport.MsgOf(b)
	defer m.Release()
	if err := conn.Send(m, 8); err != nil {
		t.Fatalf("Send: %v", err)
	}
	c := s.take(t, "send", isOpOf(cport.OpSend, conn))
	if c.Err != nil || c.N != len(b) {
		t.Fatalf("send completion %s; want %d bytes written", describe(&c), len(b))
	}
}

// exchangeNet moves bytes both ways between conn, a dialed connection, and
// peer, the net.Conn that accepted it.
func exchangeNet(t *testing.T, s *sink, conn *cport.Conn, peer net.Conn) {
	t.Helper()
	out := bytes.Repeat([]byte("dialed->peer "), 1000)
	sendCport(t, s, conn, out)
	if got := mustReadN(t, peer, len(out)); !bytes.Equal(got, out) {
		t.Fatalf("peer read bytes that differ at %d", firstDiff(got, out))
	}
	in := bytes.Repeat([]byte("peer->dialed "), 1000)
	mustWrite(t, peer, in)
	if got := recvCport(t, s, conn, len(in)); !bytes.Equal(got, in) {
		t.Fatalf("dialed connection received bytes that differ at %d", firstDiff(got, in))
	}
}

// exchangeCport moves bytes both ways between two connections of the
// port.
func exchangeCport(t *testing.T, s *sink, a, b *cport.Conn) {
	t.Helper()
	for _, pair := range [][2]*cport.Conn{{a, b}, {b, a}} {
		msg := bytes.Repeat([]byte("from "+pair[0].LocalAddr().String()+" "), 500)
		sendCport(t, s, pair[0], msg)
		if got := recvCport(t, s, pair[1], len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("received bytes that differ at %d", firstDiff(got, msg))
		}
	}
}

// acceptNet accepts one connection on ln in the background.
func acceptNet(t *testing.T, ln net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		t.Cleanup(func() { c.Close() })
		ch <- c
	}()
	return ch
}

func takeNet(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("the net listener's Accept failed")
		}
		return c
	case <-time.After(longWait):
		t.Fatalf("waited %v for the net listener to accept", longWait)
	}
	return nil
}

// needIPv6 skips t where the loopback has no IPv6 address.
func needIPv6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
}

// sameAddr fails t unless got names the address want.
func sameAddr(t *testing.T, what string, got, want net.Addr) {
	t.Helper()
	if got == nil || want == nil || got.Network() != want.Network() || got.String() != want.String() {
		t.Errorf("%s = %v; want %v", what, got, want)
	}
}

// TestConformanceDial: a dialed connection to a listener of the port and to
// one of Go's net, over IPv4 and IPv6 loopback and by the name localhost,
// carries the dial's key and tag, names both its ends, and moves bytes both
// ways.
func TestConformanceDial(t *testing.T) {
	cases := []struct {
		name    string
		network string // of the listener and the dial
		laddr   string // the listener's address
		cportLn bool   // a listener of the port, else Go's net.Listen
		host    string // dial this host rather than the listener's IP
	}{
		{"tcp4/cport", "tcp4", "127.0.0.1:0", true, ""},
		{"tcp4/net", "tcp4", "127.0.0.1:0", false, ""},
		{"tcp6/cport", "tcp6", "[::1]:0", true, ""},
		{"tcp6/net", "tcp6", "[::1]:0", false, ""},
		{"tcp/cport", "tcp", "127.0.0.1:0", true, ""},
		{"localhost/net", "tcp", "127.0.0.1:0", false, "localhost"},
	}
	forEachBackend(t, func(t *testing.T, b string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if tc.network == "tcp6" {
					needIPv6(t)
				}
				p := openPort(t, b)
				s := collect(t, p, 2)
				var (
					laddr  net.Addr
					accept func() // checks the server's side, after the dial
					conn   *cport.Conn
				)
				if tc.cportLn {
					l, err := p.Listen(tc.network, tc.laddr, 1)
					if err != nil {
						t.Fatalf("Listen: %v", err)
					}
					t.Cleanup(func() { l.Close() })
					if err := l.Accept(1); err != nil {
						t.Fatal(err)
					}
					laddr = l.Addr()
					accept = func() {
						a := s.take(t, "accept", isOp(cport.OpAccept))
						if a.Err != nil {
							t.Fatalf("accept: %v", a.Err)
						}
						t.Cleanup(func() { a.Conn.Close() })
						sameAddr(t, "the accepted connection's RemoteAddr", a.Conn.RemoteAddr(), conn.LocalAddr())
						exchangeCport(t, s, conn, a.Conn)
					}
				} else {
					ln, err := net.Listen(tc.network, tc.laddr)
					if err != nil {
						t.Fatalf("net.Listen: %v", err)
					}
					t.Cleanup(func() { ln.Close() })
					ch := acceptNet(t, ln)
					laddr = ln.Addr()
					accept = func() {
						peer := takeNet(t, ch)
						sameAddr(t, "the peer's RemoteAddr", peer.RemoteAddr(), conn.LocalAddr())
						exchangeNet(t, s, conn, peer)
					}
				}
				address := laddr.String()
				if tc.host != "" {
					address = net.JoinHostPort(tc.host, strconv.Itoa(laddr.(*net.TCPAddr).Port))
				}
				conn = dialOK(t, p, s, tc.network, address, 7, 77)
				sameAddr(t, "RemoteAddr", conn.RemoteAddr(), laddr)
				if la, ok := conn.LocalAddr().(*net.TCPAddr); !ok || !la.IP.IsLoopback() || la.Port == 0 {
					t.Errorf("LocalAddr = %v; want a loopback TCP address with its port", conn.LocalAddr())
				}
				accept()
				if n := p.Conns(); n < 1 {
					t.Errorf("Port.Conns() = %d; want the dialed connection counted", n)
				}
				// A graceful close: the peer reads an end of stream.
				conn.Close()
			})
		}
	})
}

// TestConformanceDialUnix: a Unix stream socket in a temporary directory,
// dialed where the engine has them (both ends named as net names them),
// and a clear error naming the engine where it has not (iocp). Skipped
// where the system itself has none (Wine).
func TestConformanceDialUnix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		// A directory of the test's own, as t.TempDir, but whose removal
		// may fail: Wine cannot remove it ("Invalid function").
		dir, err := os.MkdirTemp("", "cport-dial-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		path := filepath.Join(dir, "s")
		if b == "iocp" {
			err := p.Dial("unix", path, 1, 1)
			if !errors.Is(err, cport.ErrUnsupported) || !strings.Contains(err.Error(), "iocp") {
				t.Fatalf("Dial(unix) on iocp = %v; want an error matching ErrUnsupported that names iocp", err)
			}
			s.none(t, "a completion of a dial that returned an error", isOp(cport.OpDial))
			return
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Skipf("no Unix sockets here: %v", err)
		}
		t.Cleanup(func() { ln.Close() })
		ch := acceptNet(t, ln)
		conn := dialOK(t, p, s, "unix", path, 3, 33)
		ra, ok := conn.RemoteAddr().(*net.UnixAddr)
		if !ok || ra.Name != path {
			t.Errorf("RemoteAddr = %#v; want the *net.UnixAddr %q", conn.RemoteAddr(), path)
		}
		if _, ok := conn.LocalAddr().(*net.UnixAddr); !ok {
			t.Errorf("LocalAddr = %#v; want a *net.UnixAddr", conn.LocalAddr())
		}
		peer := takeNet(t, ch)
		exchangeNet(t, s, conn, peer)
		// The end of stream both ways.
		peer.(*net.UnixConn).CloseWrite()
		if got, err := recvAll(t, s, conn, 4); len(got) != 0 || err == nil {
			t.Errorf("after the peer's CloseWrite: %d bytes, %v; want the end of stream", len(got), err)
		}
		conn.Close()
		peer.SetReadDeadline(time.Now().Add(longWait))
		if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("peer read %d, %v after Close; want the end of stream", n, err)
		}
	})
}

// closedTCPPort returns a loopback address where nothing listens: a port
// just released.
func closedTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestConformanceDialRefused: a dial to a closed port completes with an
// *OpError of op "dial" naming the address, which errors.Is matches to
// syscall.ECONNREFUSED, and no connection; the port goes on dialing.
func TestConformanceDialRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		addr := closedTCPPort(t)
		if err := p.Dial("tcp", addr, 5, 55); err != nil {
			t.Fatalf("Dial: %v", err)
		}
		c := s.take(t, "dial", isOp(cport.OpDial))
		if c.Conn != nil || c.Key != 5 || c.Tag != 55 {
			t.Errorf("refused dial's completion %s, Conn %v; want key 5, tag 55 and no connection", describe(&c), c.Conn)
		}
		var oe *cport.OpError
		if !errors.Is(c.Err, syscall.ECONNREFUSED) || !errors.As(c.Err, &oe) || oe.Op != "dial" || oe.Backend != b {
			t.Fatalf("refused dial's error %#v (%v); want an *OpError of op dial on %s matching syscall.ECONNREFUSED", c.Err, c.Err, b)
		}
		if oe.Addr == nil || oe.Addr.String() != addr {
			t.Errorf("OpError.Addr = %v; want %s", oe.Addr, addr)
		}
		if p.Conns() != 0 {
			t.Errorf("Port.Conns() = %d after a refused dial; want 0", p.Conns())
		}
		// The port still dials.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ch := acceptNet(t, ln)
		conn := dialOK(t, p, s, "tcp", ln.Addr().String(), 6, 66)
		exchangeNet(t, s, conn, takeNet(t, ch))
	})
}

// TestConformanceDialMisuse: Dial on a closed port returns ErrClosed; an
// unknown network, an address that is no address, an IPv6 address for
// tcp4 and a Unix path too long are errors returned at once, with no
// completion; the port goes on.
func TestConformanceDialMisuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		for _, c := range []struct{ network, address string }{
			{"udp", "127.0.0.1:1"},
			{"ip", "127.0.0.1"},
			{"tcp", "no port"},
			{"tcp", "127.0.0.1:99999"},
			{"tcp4", "[::1]:1"},
			{"unix", ""},
			{"unix", "/" + strings.Repeat("x", 200)},
		} {
			err := p.Dial(c.network, c.address, 1, 1)
			var oe *cport.OpError
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Errorf("Dial(%q, %q) = %v; want an *OpError of op dial", c.network, c.address, err)
			}
		}
		s.none(t, "a completion of a dial that returned an error", isOp(cport.OpDial))

		q := openPort(t, b)
		q.Close()
		closedErr(t, "Dial on a closed port", q.Dial("tcp", "127.0.0.1:1", 1, 1))
	})
}

// TestConformanceDialPortClose: closing a port with dials in flight (some
// connecting to a listener whose backlog is full, which stay in progress,
// some refused, some connected) returns, and leaves nothing behind: no
// goroutine of the engine's (checkLeaks), no panic, and every connection
// that did connect closed, so that its peer reads an end of stream or a
// reset. The dials' completions that had not run are dropped with the
// port's queue.
func TestConformanceDialPortClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		stuck := fullListener(t)
		refused := closedTCPPort(t)
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		// The peers of the dials that connect: each must see its
		// connection end once the port is closed.
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			peers int
			ended int
		)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				peers++
				mu.Unlock()
				wg.Go(func() {
					defer c.Close()
					c.SetReadDeadline(time.Now().Add(longWait))
					var buf [64]byte
					for {
						if _, err := c.Read(buf[:]); err != nil {
							var ne net.Error
							if !errors.As(err, &ne) || !ne.Timeout() {
								mu.Lock()
								ended++
								mu.Unlock()
							}
							return
						}
					}
				})
			}
		})
		const each = 8
		for i := range each {
			for j, addr := range []string{stuck, refused, ln.Addr().String()} {
				if err := p.Dial("tcp", addr, 1, uint64(j*100+i)); err != nil {
					t.Fatalf("Dial(%s): %v", addr, err)
				}
			}
		}
		// Some of them have come through (the refused ones at least, on
		// every engine), others are surely in flight.
		s.take(t, "a dial's completion", isOp(cport.OpDial))
		if err := p.Close(); err != nil {
			t.Fatalf("Port.Close: %v", err)
		}
		if err := p.Dial("tcp", ln.Addr().String(), 1, 1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Dial after Close = %v; want ErrClosed", err)
		}
		ln.Close()
		waitGroup(t, &wg, "the peers of the connected dials to see their end")
		mu.Lock()
		defer mu.Unlock()
		if ended != peers {
			t.Errorf("%d of the %d connections dialed did not end once the port was closed", peers-ended, peers)
		}
		for _, c := range s.takeAll(isOp(cport.OpDial)) {
			if c.Err == nil && c.Conn == nil || c.Err != nil && c.Conn != nil {
				t.Errorf("dial completion %s with Conn %v: want a connection or an error", describe(&c), c.Conn)
			}
		}
	})
}

// TestConformanceConnValue: a connection's user data (SetValue) is nil at
// first, comes back from every completion's Conn, dialed or accepted,
// replaced or cleared at any time from any goroutine.
func TestConformanceConnValue(t *testing.T) {
	type session struct{ name string }
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		l := listen(t, p, 1)
		if err := l.Accept(1); err != nil {
			t.Fatal(err)
		}
		dialed := dialOK(t, p, s, "tcp", l.Addr().String(), 2, 2)
		a := s.take(t, "accept", isOp(cport.OpAccept))
		if a.Err != nil {
			t.Fatal(a.Err)
		}
		accepted := a.Conn
		t.Cleanup(func() { accepted.Close() })
		if dialed.Value() != nil || accepted.Value() != nil {
			t.Fatalf("Value() = %v, %v before SetValue; want nil", dialed.Value(), accepted.Value())
		}
		ds, as := &session{"dialed"}, &session{"accepted"}
		dialed.SetValue(ds)
		accepted.SetValue(as)
		for _, pair := range [][2]*cport.Conn{{dialed, accepted}, {accepted, dialed}} {
			m := cport.MsgOf([]byte("x"))
			if err := pair[0].Send(m, 1); err != nil {
				t.Fatal(err)
			}
			m.Release()
			if err := pair[1].Recv(1); err != nil {
				t.Fatal(err)
			}
			for _, op := range []cport.Op{cport.OpSend, cport.OpRecv} {
				c := s.take(t, op.String(), func(c *cport.Completion) bool { return c.Op == op && c.Conn != nil })
				want := ds
				if c.Conn == accepted {
					want = as
				}
				if got, _ := c.Conn.Value().(*session); got != want {
					t.Errorf("%v completion's Conn.Value() = %v; want %v", op, c.Conn.Value(), want)
				}
				c.Release()
			}
		}
		// Values of any type, replaced and cleared while other goroutines
		// read them (the race detector watches).
		dialed.SetValue(0)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for j := range 1000 {
					switch (i + j) % 3 {
					case 0:
						dialed.SetValue(j)
					case 1:
						dialed.SetValue(nil)
					default:
						if v := dialed.Value(); v != nil {
							if _, ok := v.(int); !ok {
								t.Errorf("Value() = %#v; want an int or nil", v)
							}
						}
					}
				}
			})
		}
		wg.Wait()
		dialed.SetValue("last")
		if v := dialed.Value(); v != "last" {
			t.Errorf("Value() = %#v; want \"last\"", v)
		}
		dialed.SetValue(nil)
		if v := dialed.Value(); v != nil {
			t.Errorf("Value() = %#v after SetValue(nil); want nil", v)
		}
		// A closed connection keeps its value until it is garbage.
		accepted.Close()
		if v := accepted.Value(); v != as {
			t.Errorf("Value() = %v after Close; want %v", v, as)
		}
	})
}

// fullListener returns the address of a loopback listener whose accept
// queue is full, so that a connect to it stays in progress (its SYN
// dropped and sent again) until canceled; where that cannot be arranged,
// a listener that never accepts.
func fullListener(t *testing.T) string {
	t.Helper()
	if addr, ok := fullListenerOS(t); ok {
		return addr
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestConformanceDialHandler: on a port that runs its completions where
// they complete (Config.Handler), a dial's completion reaches the handler,
// refused or connected, whether it comes from the engine's goroutine or,
// for a connect that fails at once, from Dial's caller; a dial started in
// the handler itself completes too.
func TestConformanceDialHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ch := acceptNet(t, ln)
		done := make(chan cport.Completion, 4)
		var p *cport.Port
		p = openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
			if c.Op != cport.OpDial {
				return
			}
			if c.Tag == 1 {
				// Dial from the handler: the second dial.
				if err := p.Dial("tcp", ln.Addr().String(), 2, 2); err != nil {
					t.Errorf("Dial in the handler: %v", err)
				}
			}
			done <- c
		}})
		if err := p.Dial("tcp", closedTCPPort(t), 1, 1); err != nil {
			t.Fatal(err)
		}
		got := map[uint64]cport.Completion{}
		for len(got) < 2 {
			select {
			case c := <-done:
				got[c.Tag] = c
			case <-time.After(longWait):
				t.Fatalf("waited %v for the dials' completions; have %v", longWait, got)
			}
		}
		if c := got[1]; !errors.Is(c.Err, syscall.ECONNREFUSED) || c.Conn != nil {
			t.Errorf("refused dial: %s; want ECONNREFUSED", describe(&c))
		}
		c := got[2]
		if c.Err != nil || c.Conn == nil || c.Key != 2 {
			t.Fatalf("dial: %s; want a connection under key 2", describe(&c))
		}
		defer c.Conn.Close()
		peer := takeNet(t, ch)
		sameAddr(t, "the peer's RemoteAddr", peer.RemoteAddr(), c.Conn.LocalAddr())
	})
}

// TestConformanceDialMany: many dials at once to a listener of the same
// port all connect, each to the connection its accept brings (the dials'
// slots and rings reused as they complete), and each pair moves a byte
// both ways.
func TestConformanceDialMany(t *testing.T) {
	const n = 64
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		l := listen(t, p, 1)
		if err := l.AcceptMulti(1); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := p.Dial("tcp", l.Addr().String(), uint64(100+i), uint64(i)); err != nil {
				t.Fatalf("Dial %d: %v", i, err)
			}
		}
		accepted := make(map[string]*cport.Conn, n)
		dialed := make([]*cport.Conn, n)
		for range 2 * n {
			c := s.take(t, "a dial or an accept", func(c *cport.Completion) bool {
				return c.Op == cport.OpDial || c.Op == cport.OpAccept
			})
			if c.Err != nil || c.Conn == nil {
				t.Fatalf("%s: want a connection", describe(&c))
			}
			t.Cleanup(func() { c.Conn.Close() })
			if c.Op == cport.OpAccept {
				accepted[c.Conn.RemoteAddr().String()] = c.Conn
				continue
			}
			if c.Key != 100+c.Tag || dialed[c.Tag] != nil {
				t.Fatalf("dial completion %s: key not the dial's, or twice", describe(&c))
			}
			dialed[c.Tag] = c.Conn
		}
		for i, d := range dialed {
			a := accepted[d.LocalAddr().String()]
			if a == nil {
				t.Fatalf("dial %d from %v: no accepted connection from there", i, d.LocalAddr())
			}
			b := []byte{byte(i)}
			sendCport(t, s, d, b)
			if got := recvCport(t, s, a, 1); got[0] != b[0] {
				t.Fatalf("dial %d: the accepted side got %v; want %v", i, got, b)
			}
			sendCport(t, s, a, b)
			if got := recvCport(t, s, d, 1); got[0] != b[0] {
				t.Fatalf("dial %d: got %v back; want %v", i, got, b)
			}
		}
		if got := p.Conns(); got != 2*n {
			t.Errorf("Port.Conns() = %d; want %d", got, 2*n)
		}
	})
}

// TestConformanceDialTimeout: dials to a listener whose queue is full get
// no answer; DialTimeout ends each once its timeout has passed, with an
// error matching os.ErrDeadlineExceeded, while a dial with a timeout to a
// listener that answers, and one refused, complete as Dial's do; the port
// goes on working.
func TestConformanceDialTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		stuck := fullListener(t)
		refused := closedTCPPort(t)
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		ch := acceptNet(t, ln)
		const n = 8
		start := time.Now()
		for i := range n {
			timeout := time.Duration(50+25*i) * time.Millisecond
			if err := p.DialTimeout("tcp", stuck, timeout, 1, uint64(i)); err != nil {
				t.Fatalf("DialTimeout(%s): %v", stuck, err)
			}
		}
		if err := p.DialTimeout("tcp", refused, time.Minute, 2, 0); err != nil {
			t.Fatal(err)
		}
		for range n {
			c := s.take(t, "a timed-out dial", func(c *cport.Completion) bool { return c.Op == cport.OpDial && c.Key == 1 })
			var oe *cport.OpError
			if !errors.Is(c.Err, os.ErrDeadlineExceeded) || !errors.As(c.Err, &oe) || oe.Op != "dial" || c.Conn != nil {
				t.Errorf("dial %d: %s; want an OpError of os.ErrDeadlineExceeded", c.Tag, describe(&c))
			}
		}
		if took := time.Since(start); took < 50*time.Millisecond {
			t.Errorf("the dials timed out after %v; want 50ms at least", took)
		}
		c := s.take(t, "the refused dial", func(c *cport.Completion) bool { return c.Op == cport.OpDial && c.Key == 2 })
		if !errors.Is(c.Err, syscall.ECONNREFUSED) {
			t.Errorf("refused dial: %s; want ECONNREFUSED", describe(&c))
		}
		conn := dialTimeoutOK(t, p, s, ln.Addr().String())
		exchangeNet(t, s, conn, takeNet(t, ch))
	})
}

// dialTimeoutOK dials addr with a timeout of a minute and returns the
// connection.
func dialTimeoutOK(t *testing.T, p *cport.Port, s *sink, addr string) *cport.Conn {
	t.Helper()
	if err := p.DialTimeout("tcp", addr, time.Minute, 3, 33); err != nil {
		t.Fatal(err)
	}
	c := s.take(t, "the dial", func(c *cport.Completion) bool { return c.Op == cport.OpDial && c.Key == 3 })
	if c.Err != nil || c.Conn == nil {
		t.Fatalf("dial: %s; want a connection", describe(&c))
	}
	t.Cleanup(func() { c.Conn.Close() })
	return c.Conn
}

// TestConformanceDialTimeoutHandler: on a port run to completion, a
// timed-out dial's completion runs the handler, once.
func TestConformanceDialTimeoutHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		stuck := fullListener(t)
		done := make(chan error, 2)
		p := openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
			if c.Op == cport.OpDial {
				done <- c.Err
			}
		}})
		if err := p.DialTimeout("tcp", stuck, 20*time.Millisecond, 1, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("dial: %v; want os.ErrDeadlineExceeded", err)
			}
		case <-time.After(longWait):
			t.Fatalf("waited %v for the dial's completion", longWait)
		}
		closeWithin(t, p)
		if len(done) != 0 {
			t.Errorf("a second dial completion: %v", <-done)
		}
	})
}
