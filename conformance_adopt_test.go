package cport_test

// Adopted sockets (Port.AdoptConn, Port.AdoptListener) and detached ones
// (Conn.Detach), on every engine. Every socket is a loopback one
// (127.0.0.1) or a Unix socket in the test's temporary directory.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
)

// adoptable reports whether the port's engine adopts sockets, given the
// error of a first adoption of a socket of Go's net: an engine that
// cannot (portable on Windows, whose net has no FileConn; iocp, for such a
// socket is associated with the runtime's completion port: see
// TestAdoptIOCPRawSocket for what it adopts) must say so with an error
// matching ErrUnsupported that names it.
func adoptable(t *testing.T, p *cport.Port, err error) bool {
	t.Helper()
	cannot := p.Backend() == "iocp" || runtime.GOOS == "windows"
	if cannot {
		if !errors.Is(err, cport.ErrUnsupported) || !strings.Contains(err.Error(), p.Backend()) {
			t.Fatalf("adopting on %s = %v; want an error matching ErrUnsupported that names the engine", p.Backend(), err)
		}
		return false
	}
	if err != nil {
		t.Fatalf("adopting on %s: %v", p.Backend(), err)
	}
	return true
}

// detachable is adoptable for Conn.Detach: iocp cannot detach, nor can
// portable on Windows.
func detachable(t *testing.T, p *cport.Port, err error) bool {
	t.Helper()
	if p.Backend() == "iocp" || runtime.GOOS == "windows" {
		if !errors.Is(err, cport.ErrUnsupported) || !strings.Contains(err.Error(), p.Backend()) {
			t.Fatalf("Detach on %s = %v; want an error matching ErrUnsupported that names the engine", p.Backend(), err)
		}
		return false
	}
	return true
}

// netPair returns the two ends of a TCP connection over 127.0.0.1, made
// with Go's net, closed when the test ends.
func netPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := acceptNet(t, ln)
	client = dialOne(t, ln.Addr())
	return client, takeNet(t, ch).(*net.TCPConn)
}

// acceptAdopted accepts one connection on l, an adopted listener, dialed
// by dial, and returns the port's side.
func acceptAdopted(t *testing.T, s *sink, l *cport.Listener, dial func() net.Conn) (*cport.Conn, net.Conn) {
	t.Helper()
	if err := l.Accept(5); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	peer := dial()
	a := s.take(t, "accept", isOp(cport.OpAccept))
	if a.Err != nil || a.Conn == nil || a.Key != l.Key() {
		t.Fatalf("accept completion %s; want a connection under key %d", describe(&a), l.Key())
	}
	t.Cleanup(func() { a.Conn.Close() })
	return a.Conn, peer
}

// TestConformanceAdoptListenerTCP: a listener from net.Listen, adopted,
// then closed by its owner: the port's Listener accepts on, and the
// connection moves bytes both ways.
func TestConformanceAdoptListenerTCP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		l, err := p.AdoptListener(nl.(*net.TCPListener), 77)
		if !adoptable(t, p, err) {
			return
		}
		t.Cleanup(func() { l.Close() })
		if l.Key() != 77 || l.Addr().String() != nl.Addr().String() {
			t.Fatalf("adopted listener: key %d, address %v; want 77, %v", l.Key(), l.Addr(), nl.Addr())
		}
		nl.Close() // the caller's: the port's duplicate listens on
		conn, peer := acceptAdopted(t, s, l, func() net.Conn { return dialOne(t, l.Addr()) })
		if conn.LocalAddr().String() != l.Addr().String() || conn.RemoteAddr().String() != peer.LocalAddr().String() {
			t.Errorf("accepted connection %v -> %v; want %v -> %v", conn.LocalAddr(), conn.RemoteAddr(), l.Addr(), peer.LocalAddr())
		}
		exchangeNet(t, s, conn, peer)
	})
}

// tempDir returns a temporary directory, as t.TempDir, but whose removal
// may fail: Wine cannot remove it ("Invalid function").
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cport-adopt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dialUnix returns a function that connects to the Unix socket at path
// with Go's net, closed when the test ends.
func dialUnix(t *testing.T, path string) func() net.Conn {
	return func() net.Conn {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// TestConformanceAdoptListenerUnix: a Unix listener from net.Listen,
// adopted; its connections move bytes both ways.
func TestConformanceAdoptListenerUnix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		path := filepath.Join(tempDir(t), "s")
		nl, err := net.Listen("unix", path)
		if err != nil {
			t.Skipf("no Unix sockets here: %v", err)
		}
		defer nl.Close()
		// The caller closes its listener right away: the path stays, for
		// the port's duplicate.
		nl.(*net.UnixListener).SetUnlinkOnClose(false)
		l, err := p.AdoptListener(nl.(*net.UnixListener), 78)
		if !adoptable(t, p, err) {
			return
		}
		t.Cleanup(func() { l.Close() })
		if a, ok := l.Addr().(*net.UnixAddr); !ok || a.Name != path {
			t.Errorf("adopted listener's Addr = %#v; want the *net.UnixAddr %q", l.Addr(), path)
		}
		nl.Close()
		conn, peer := acceptAdopted(t, s, l, dialUnix(t, path))
		exchangeNet(t, s, conn, peer)
	})
}

// TestConformanceAdoptConnUnix: the dialing end of a Unix stream
// connection, a *net.UnixConn, adopted: it moves bytes both ways, and
// knows its peer's path.
func TestConformanceAdoptConnUnix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		path := filepath.Join(tempDir(t), "s")
		nl, err := net.Listen("unix", path)
		if err != nil {
			t.Skipf("no Unix sockets here: %v", err)
		}
		defer nl.Close()
		ch := acceptNet(t, nl)
		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conn, err := p.AdoptConn(nc.(*net.UnixConn), 4)
		if !adoptable(t, p, err) {
			return
		}
		t.Cleanup(func() { conn.Close() })
		nc.Close()
		if ra, ok := conn.RemoteAddr().(*net.UnixAddr); !ok || ra.Name != path {
			t.Errorf("adopted Conn's RemoteAddr = %#v; want the *net.UnixAddr %q", conn.RemoteAddr(), path)
		}
		exchangeNet(t, s, conn, takeNet(t, ch))
	})
}

// TestConformanceAdoptConnTCP: both ends of a connection made with Go's
// net adopted in turn. Closing the caller's object leaves the port's
// Conn working, and closing the port's Conn leaves the caller's object
// working: each holds a descriptor of its own.
func TestConformanceAdoptConnTCP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		client, server := netPair(t)
		conn, err := p.AdoptConn(server, 9)
		if !adoptable(t, p, err) {
			return
		}
		t.Cleanup(func() { conn.Close() })
		if conn.Key() != 9 || p.Conns() != 1 {
			t.Fatalf("adopted Conn: key %d, port's Conns %d; want 9, 1", conn.Key(), p.Conns())
		}
		if conn.RemoteAddr().String() != client.LocalAddr().String() || conn.LocalAddr().String() != client.RemoteAddr().String() {
			t.Errorf("adopted Conn %v -> %v; want %v -> %v", conn.LocalAddr(), conn.RemoteAddr(), client.RemoteAddr(), client.LocalAddr())
		}
		server.Close() // the caller's: the port's Conn goes on
		exchangeNet(t, s, conn, client)

		// The dialing end now, its caller's object kept open: closing the
		// port's Conn leaves it working.
		client2, server2 := netPair(t)
		conn2, err := p.AdoptConn(client2, 10)
		if err != nil {
			t.Fatalf("AdoptConn of a dialed connection: %v", err)
		}
		exchangeNet(t, s, conn2, server2)
		conn2.Close()
		msg := []byte("still the caller's")
		mustWrite(t, client2, msg)
		if got := mustReadN(t, server2, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("read %q through the caller's connection; want %q", got, msg)
		}
		mustWrite(t, server2, msg)
		if got := mustReadN(t, client2, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("read %q through the caller's connection; want %q", got, msg)
		}
	})
}

// TestConformanceAdoptFile: a listener and a connection passed as
// *os.File, as a parent process or systemd hands them over.
func TestConformanceAdoptFile(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		nl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		f, err := nl.File()
		if err != nil {
			_, aerr := p.AdoptListener(nl, 1)
			if adoptable(t, p, aerr) {
				t.Fatalf("TCPListener.File: %v", err)
			}
			return // Windows: no File, and no adoption either
		}
		nl.Close()
		l, err := p.AdoptListener(f, 11)
		f.Close()
		if !adoptable(t, p, err) {
			return
		}
		t.Cleanup(func() { l.Close() })
		conn, peer := acceptAdopted(t, s, l, func() net.Conn { return dialOne(t, l.Addr()) })
		exchangeNet(t, s, conn, peer)

		client, server := netPair(t)
		cf, err := server.File()
		if err != nil {
			t.Fatal(err)
		}
		server.Close()
		conn2, err := p.AdoptConn(cf, 12)
		cf.Close()
		if err != nil {
			t.Fatalf("AdoptConn(*os.File): %v", err)
		}
		t.Cleanup(func() { conn2.Close() })
		exchangeNet(t, s, conn2, client)
	})
}

// TestConformanceAdoptErrors: what is not a connected or listening
// stream socket, and a closed port, are errors that leave the port
// holding nothing.
func TestConformanceAdoptErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		var udp syscall.Conn
		if pc, err := net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Logf("no UDP socket here, not adopted: %v", err) // Wine
		} else {
			defer pc.Close()
			udp = pc.(*net.UDPConn)
		}
		regular, err := os.CreateTemp(tempDir(t), "regular")
		if err != nil {
			t.Fatal(err)
		}
		defer regular.Close()
		closed, err := os.CreateTemp(tempDir(t), "closed")
		if err != nil {
			t.Fatal(err)
		}
		closed.Close()
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		client, _ := netPair(t)
		closedConn, _ := netPair(t)
		closedConn.Close()
		for _, tc := range []struct {
			what     string
			sc       syscall.Conn
			listener bool
			want     string // in the error, where the engine adopts
		}{
			{"a UDP socket", udp, false, "datagram"},
			{"a UDP socket as a listener", udp, true, "datagram"},
			{"a regular file", regular, false, "stream"},
			{"a regular file as a listener", regular, true, "stream"},
			{"a closed file", closed, false, "closed"},
			{"a closed connection", closedConn, false, ""},
			{"a listener as a connection", nl.(*net.TCPListener), false, "listening"},
			{"a connection as a listener", client, true, "listening"},
		} {
			if tc.sc == nil {
				continue // no UDP here
			}
			var err error
			if tc.listener {
				var l *cport.Listener
				l, err = p.AdoptListener(tc.sc, 1)
				if l != nil {
					t.Errorf("AdoptListener(%s) returned a listener", tc.what)
				}
			} else {
				var c *cport.Conn
				c, err = p.AdoptConn(tc.sc, 1)
				if c != nil {
					t.Errorf("AdoptConn(%s) returned a Conn", tc.what)
				}
			}
			if err == nil {
				t.Errorf("adopting %s: no error", tc.what)
				continue
			}
			if b == "iocp" || runtime.GOOS == "windows" {
				continue // ErrUnsupported, for every socket (TestConformanceAdoptListenerTCP)
			}
			var oe *cport.OpError
			if !errors.As(err, &oe) || oe.Op != "adopt" || oe.Backend != b || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("adopting %s: %v; want an adopt *OpError of %s saying %q", tc.what, err, b, tc.want)
			}
		}
		if n := p.Conns(); n != 0 {
			t.Errorf("port holds %d connections after failed adoptions; want 0", n)
		}
		// The caller's objects are untouched.
		if _, err := client.Write([]byte("x")); err != nil {
			t.Errorf("the caller's connection after a failed adoption: %v", err)
		}

		q := openPort(t, b)
		q.Close()
		if _, err := q.AdoptConn(client, 1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("AdoptConn on a closed port = %v; want ErrClosed", err)
		}
		if _, err := q.AdoptListener(nl.(*net.TCPListener), 1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("AdoptListener on a closed port = %v; want ErrClosed", err)
		}
	})
}

// TestConformanceAdoptPortClose: Port.Close closes the adopted
// connections and listeners: once the caller closed its own objects, the
// peer reads an end of stream and a dial is refused.
func TestConformanceAdoptPortClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		collect(t, p, 1)
		client, server := netPair(t)
		conn, err := p.AdoptConn(server, 1)
		if !adoptable(t, p, err) {
			return
		}
		server.Close()
		if err := conn.Recv(1); err != nil {
			t.Fatalf("Recv: %v", err)
		}
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := p.AdoptListener(nl.(*net.TCPListener), 2)
		if err != nil {
			t.Fatalf("AdoptListener: %v", err)
		}
		nl.Close()
		if err := l.AcceptMulti(2); err != nil {
			t.Fatalf("AcceptMulti: %v", err)
		}
		p.Close()
		client.SetReadDeadline(time.Now().Add(longWait))
		if n, err := client.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("peer's read after Port.Close: %d, %v; want an end of stream", n, err)
		}
		if c, err := net.DialTimeout("tcp", l.Addr().String(), longWait); err == nil {
			c.Close()
			t.Errorf("a dial to the adopted listener succeeded after Port.Close")
		}
		if _, err := conn.Detach(); err == nil {
			t.Errorf("Detach after Port.Close: no error")
		}
	})
}

// TestConformanceDetachBusy: a connection with a receive in progress, or
// a receive's completion not released, cannot leave the port (ErrBusy),
// and is not changed by the attempt.
func TestConformanceDetachBusy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.Recv(4); err != nil {
			t.Fatalf("Recv: %v", err)
		}
		f, err := conn.Detach()
		if f != nil {
			f.Close()
			t.Fatalf("Detach with a receive in progress returned a file")
		}
		if !detachable(t, p, err) {
			return
		}
		if !errors.Is(err, cport.ErrBusy) {
			t.Fatalf("Detach with a receive in progress = %v; want ErrBusy", err)
		}
		mustWrite(t, cl, []byte("abc"))
		c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
		if c.Err != nil || string(c.Buf) != "abc" {
			t.Fatalf("receive after a refused Detach: %s; want \"abc\"", describe(&c))
		}
		// Its completion is still out.
		if _, err := conn.Detach(); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Detach with a receive's completion out = %v; want ErrBusy", err)
		}
		c.Release()
		// A send the peer does not read stays in flight: the kernel's
		// buffers hold 4 MiB of it (tcp_wmem's maximum) and the peer's
		// a little more, its receive buffer set (so not grown).
		cl.SetReadBuffer(64 << 10)
		m := cport.MsgOf(make([]byte, 16<<20))
		defer m.Release()
		if err := conn.Send(m, 6); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if _, err := conn.Detach(); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Detach with a send in flight = %v; want ErrBusy", err)
		}
		conn.Abort()
		s.take(t, "the send's end", isOpOf(cport.OpSend, conn))
		if _, err := conn.Detach(); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Detach of a closed Conn = %v; want ErrClosed", err)
		}
	})
}

// TestConformanceDetach: an idle connection leaves the port as an
// *os.File; net.FileConn of it moves bytes both ways with the peer, who
// saw nothing of the move, and the Conn is closed.
func TestConformanceDetach(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		exchangeNet(t, s, conn, cl)
		f, err := conn.Detach()
		if !detachable(t, p, err) {
			// Unchanged by the attempt.
			exchangeNet(t, s, conn, cl)
			return
		}
		if err != nil {
			t.Fatalf("Detach: %v", err)
		}
		nc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("net.FileConn of the detached file: %v", err)
		}
		defer nc.Close()
		if err := conn.Recv(1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Recv on a detached Conn = %v; want ErrClosed", err)
		}
		eventually(t, "the port to forget the detached Conn", func() bool { return p.Conns() == 0 })
		// Data the peer sent before the detached side reads.
		mustWrite(t, cl, []byte("to the file"))
		nc.SetDeadline(time.Now().Add(longWait))
		if got := mustReadN(t, nc, 11); string(got) != "to the file" {
			t.Fatalf("detached socket read %q", got)
		}
		mustWrite(t, nc, []byte("from the file"))
		if got := mustReadN(t, cl, 13); string(got) != "from the file" {
			t.Fatalf("peer read %q", got)
		}
		// The detached socket, adopted back.
		if runtime.GOOS != "windows" && b != "iocp" {
			back, err := p.AdoptConn(nc.(syscall.Conn), 3)
			if err != nil {
				t.Fatalf("AdoptConn of the detached socket: %v", err)
			}
			nc.Close()
			t.Cleanup(func() { back.Close() })
			exchangeNet(t, s, back, cl)
		}
	})
}

// TestConformanceDetachPortClose: Detach racing Port.Close gives either
// a working file or an error, and the port closes.
func TestConformanceDetachPortClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conns, clients := acceptN(t, p, s, 8)
		files := make(chan *os.File, len(conns))
		for _, conn := range conns {
			go func() {
				f, err := conn.Detach()
				if err != nil {
					f = nil
				}
				files <- f
			}()
		}
		p.Close()
		for range conns {
			f := <-files
			if f == nil {
				continue
			}
			// Which client it is does not matter: each file must be a
			// live socket.
			nc, err := net.FileConn(f)
			f.Close()
			if err != nil {
				t.Errorf("net.FileConn of a file detached while the port closed: %v", err)
				continue
			}
			nc.Close()
		}
		for _, cl := range clients {
			cl.Close()
		}
	})
}

// TestConformanceDetachInHandler: a connection detached by the handler of
// its own receive's completion (Config.Handler: on the engine's goroutine
// that read it, uring's loop among them) leaves as a working file.
func TestConformanceDetachInHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		type result struct {
			f   *os.File
			err error
		}
		results := make(chan result, 1)
		accepted := make(chan *cport.Conn, 1)
		p := openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err == nil {
					accepted <- c.Conn
					c.Conn.Recv(1)
				}
			case cport.OpRecv:
				got := string(c.Buf)
				c.Release()
				if got != "go" {
					results <- result{err: errors.New("received " + got)}
					return
				}
				f, err := c.Conn.Detach()
				results <- result{f, err}
			}
		}})
		l := listen(t, p, 1)
		if err := l.Accept(1); err != nil {
			t.Fatal(err)
		}
		cl := dialOne(t, l.Addr())
		var conn *cport.Conn
		select {
		case conn = <-accepted:
		case <-time.After(longWait):
			t.Fatal("no accept")
		}
		t.Cleanup(func() { conn.Close() })
		mustWrite(t, cl, []byte("go"))
		var r result
		select {
		case r = <-results:
		case <-time.After(longWait):
			t.Fatal("the handler did not run Detach")
		}
		if !detachable(t, p, r.err) {
			return
		}
		if r.err != nil {
			t.Fatalf("Detach in the handler: %v", r.err)
		}
		nc, err := net.FileConn(r.f)
		r.f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(longWait))
		mustWrite(t, cl, []byte("after"))
		if got := mustReadN(t, nc, 5); string(got) != "after" {
			t.Fatalf("detached socket read %q", got)
		}
	})
}

// TestConformanceListenUnix: Port.Listen of a Unix socket: a client of
// Go's net and a dial of the port itself connect and move bytes both
// ways; the Listener's Close removes the socket's file. An engine that
// cannot take a Unix socket (iocp) refuses with ErrUnsupported naming it.
func TestConformanceListenUnix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		dir := tempDir(t)
		if probe, err := net.Listen("unix", filepath.Join(dir, "probe")); err != nil {
			t.Skipf("no Unix sockets here: %v", err)
		} else {
			probe.Close()
		}
		p := openPort(t, b)
		s := collect(t, p, 2)
		path := filepath.Join(dir, "s")
		l, err := p.Listen("unix", path, 79)
		if !adoptable(t, p, err) {
			if _, serr := os.Stat(path); serr == nil {
				t.Errorf("a refused Listen left %s behind", path)
			}
			return
		}
		if a, ok := l.Addr().(*net.UnixAddr); !ok || a.Name != path {
			t.Errorf("Addr = %#v; want the *net.UnixAddr %q", l.Addr(), path)
		}
		if _, err := p.Listen("unix", path, 79); err == nil {
			t.Errorf("a second Listen on %s succeeded; want an error (the path is in use)", path)
		}
		conn, peer := acceptAdopted(t, s, l, dialUnix(t, path))
		exchangeNet(t, s, conn, peer)
		if err := l.Accept(80); err != nil {
			t.Fatal(err)
		}
		dialed := dialOK(t, p, s, "unix", path, 4, 44)
		a := s.take(t, "the accept", func(c *cport.Completion) bool { return c.Op == cport.OpAccept && c.Tag == 80 })
		if a.Err != nil {
			t.Fatalf("accept: %s", describe(&a))
		}
		t.Cleanup(func() { a.Conn.Close() })
		if err := dialed.SendQuiet(cport.MsgOf([]byte("over the port"))); err != nil {
			t.Fatal(err)
		}
		dialed.Close() // graceful: the message, then the end of stream
		got, err := recvAll(t, s, a.Conn, 81)
		if !errors.Is(err, io.EOF) || string(got) != "over the port" {
			t.Fatalf("received %q, %v; want the message, then io.EOF", got, err)
		}
		l.Close()
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Close, %s: %v; want it removed", path, err)
		}
	})
}
