package cport_test

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceAccept: a single Accept yields exactly one OpAccept with
// the listener's key and the accept's tag, the new Conn and the Listener;
// the next connection waits for the next Accept.
func TestConformanceAccept(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		l := listen(t, p, 77)
		if l.Addr() == nil {
			t.Fatal("Listener.Addr() = nil")
		}
		if err := l.Accept(1001); err != nil {
			t.Fatalf("Accept: %v", err)
		}
		cl := dialOne(t, l.Addr())
		c := s.take(t, "accept", isOp(cport.OpAccept))
		if c.Err != nil {
			t.Fatalf("accept completion error: %v", c.Err)
		}
		if c.Key != 77 || c.Tag != 1001 {
			t.Errorf("accept completion key %d tag %d; want key 77 (the listener's) tag 1001", c.Key, c.Tag)
		}
		if c.Conn == nil {
			t.Fatal("accept completion without a Conn")
		}
		t.Cleanup(func() { c.Conn.Close() })
		if c.Listener != l {
			t.Errorf("accept completion Listener = %p; want %p", c.Listener, l)
		}
		if c.Buf != nil || c.N != 0 {
			t.Errorf("accept completion carries Buf %q N %d; want none", c.Buf, c.N)
		}
		if got, want := c.Conn.RemoteAddr().String(), cl.LocalAddr().String(); got != want {
			t.Errorf("Conn.RemoteAddr() = %s; want the client's %s", got, want)
		}
		if got, want := c.Conn.LocalAddr().String(), cl.RemoteAddr().String(); got != want {
			t.Errorf("Conn.LocalAddr() = %s; want %s", got, want)
		}
		c.Release() // does nothing for accepts

		// Single-shot: a second client is not accepted until Accept again.
		dialOne(t, l.Addr())
		s.none(t, "second accept without a second Accept", isOp(cport.OpAccept))
		if err := l.Accept(1002); err != nil {
			t.Fatalf("second Accept: %v", err)
		}
		c2 := s.take(t, "second accept", isOp(cport.OpAccept))
		if c2.Err != nil || c2.Conn == nil || c2.Tag != 1002 || c2.Key != 77 {
			t.Fatalf("second accept completion %s; want a conn with key 77 tag 1002", describe(&c2))
		}
		t.Cleanup(func() { c2.Conn.Close() })
		if c2.Conn == c.Conn {
			t.Error("two accepts returned the same Conn")
		}
		if n := p.Conns(); n != 2 {
			t.Errorf("Port.Conns() = %d; want 2", n)
		}
		s.none(t, "accept beyond the two asked for", isOp(cport.OpAccept))
	})
}

// TestConformanceAcceptMulti: AcceptMulti yields one completion per
// connection, each with a distinct Conn.
func TestConformanceAcceptMulti(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const n = 200
		p := openPort(t, b)
		s := collect(t, p, 2)
		l := listen(t, p, 5)
		if err := l.AcceptMulti(9); err != nil {
			t.Fatalf("AcceptMulti: %v", err)
		}
		clients := dial(t, l.Addr(), n)
		remotes := make(map[string]bool, n)
		for _, cl := range clients {
			remotes[cl.LocalAddr().String()] = true
		}
		seen := make(map[*cport.Conn]bool, n)
		for range n {
			c := s.take(t, "accept", isOp(cport.OpAccept))
			if c.Err != nil || c.Conn == nil {
				t.Fatalf("accept completion %s; want a conn", describe(&c))
			}
			t.Cleanup(func() { c.Conn.Close() })
			if c.Key != 5 || c.Tag != 9 || c.Listener != l {
				t.Errorf("accept completion %s; want key 5 tag 9 and the listener", describe(&c))
			}
			if seen[c.Conn] {
				t.Fatalf("Conn %p accepted twice", c.Conn)
			}
			seen[c.Conn] = true
			ra := c.Conn.RemoteAddr().String()
			if !remotes[ra] {
				t.Errorf("accepted a conn from %s, not one of the clients (or twice)", ra)
			}
			delete(remotes, ra)
		}
		if got := p.Conns(); got != n {
			t.Errorf("Port.Conns() = %d; want %d", got, n)
		}
		s.none(t, "accept beyond the clients", isOp(cport.OpAccept))
		// It goes on accepting.
		dialOne(t, l.Addr())
		c := s.take(t, "accept after the first 200", isOp(cport.OpAccept))
		if c.Err != nil || c.Conn == nil {
			t.Fatalf("accept completion %s; want a conn", describe(&c))
		}
		c.Conn.Close()
	})
}

// TestConformanceAcceptBusy: a listener has one accept in progress at most.
func TestConformanceAcceptBusy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		l := listen(t, p, 1)
		if err := l.Accept(1); err != nil {
			t.Fatalf("Accept: %v", err)
		}
		if err := l.Accept(2); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("second Accept = %v; want ErrBusy", err)
		}
		if err := l.AcceptMulti(3); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("AcceptMulti during Accept = %v; want ErrBusy", err)
		}
		dialOne(t, l.Addr())
		c := s.take(t, "accept", isOp(cport.OpAccept))
		if c.Err != nil || c.Tag != 1 {
			t.Fatalf("accept completion %s; want a conn with tag 1", describe(&c))
		}
		c.Conn.Close()
		// Done: a new accept may start; a multishot one stays busy.
		if err := l.AcceptMulti(4); err != nil {
			t.Fatalf("AcceptMulti after the accept completed: %v", err)
		}
		if err := l.Accept(5); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Accept during AcceptMulti = %v; want ErrBusy", err)
		}
		dialOne(t, l.Addr())
		c = s.take(t, "accept", isOp(cport.OpAccept))
		if c.Err != nil || c.Tag != 4 {
			t.Fatalf("accept completion %s; want a conn with tag 4", describe(&c))
		}
		c.Conn.Close()
		if err := l.Accept(6); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Accept after a multishot completion = %v; want ErrBusy", err)
		}
	})
}

// TestConformanceAcceptCancel: closing the listener completes its pending
// accept with ErrCanceled; later accepts fail with net.ErrClosed.
func TestConformanceAcceptCancel(t *testing.T) {
	for _, multi := range []bool{false, true} {
		name := "Accept"
		if multi {
			name = "AcceptMulti"
		}
		t.Run(name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b string) {
				p := openPort(t, b)
				s := collect(t, p, 2)
				l := listen(t, p, 3)
				start := l.Accept
				if multi {
					start = l.AcceptMulti
				}
				if err := start(42); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if multi { // one accepted first: the accept goes on
					dialOne(t, l.Addr())
					c := s.take(t, "accept", isOp(cport.OpAccept))
					if c.Err != nil {
						t.Fatalf("accept: %v", c.Err)
					}
					c.Conn.Close()
				}
				if err := l.Close(); err != nil {
					t.Fatalf("Listener.Close: %v", err)
				}
				c := s.take(t, "canceled accept", isOp(cport.OpAccept))
				if !errors.Is(c.Err, cport.ErrCanceled) {
					t.Errorf("pending accept after Close completed with %s; want ErrCanceled", describe(&c))
				}
				if c.Key != 3 || c.Tag != 42 || c.Conn != nil || c.Listener != l {
					t.Errorf("canceled accept completion %s (conn %p, listener %p); want key 3 tag 42, no conn, the listener", describe(&c), c.Conn, c.Listener)
				}
				if err := l.Accept(43); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept after Close = %v; want net.ErrClosed", err)
				}
				if err := l.AcceptMulti(44); !errors.Is(err, net.ErrClosed) {
					t.Errorf("AcceptMulti after Close = %v; want net.ErrClosed", err)
				}
				if err := l.Close(); err != nil {
					t.Errorf("second Listener.Close: %v", err)
				}
				s.none(t, "accept after the cancellation", isOp(cport.OpAccept))
			})
		})
	}
}

// TestConformanceAcceptCloseIdle: closing a listener with no accept in
// progress posts nothing; its accepted connections live on.
func TestConformanceAcceptCloseIdle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		l := listen(t, p, 3)
		if err := l.Accept(1); err != nil {
			t.Fatal(err)
		}
		cl := dialOne(t, l.Addr())
		a := s.take(t, "accept", isOp(cport.OpAccept))
		if a.Err != nil {
			t.Fatal(a.Err)
		}
		l.Close()
		s.none(t, "accept after closing an idle listener", isOp(cport.OpAccept))
		// The accepted connection is unaffected.
		m := cport.MsgOf([]byte("still here"))
		if err := a.Conn.Send(m, 7); err != nil {
			t.Fatalf("Send on a conn of a closed listener: %v", err)
		}
		m.Release()
		if got := mustReadN(t, cl, 10); string(got) != "still here" {
			t.Errorf("client read %q", got)
		}
		a.Conn.Close()
	})
}

// TestConformanceListenErrors: Listen reports bad networks and addresses as
// errors, and fails once the port is closed.
func TestConformanceListenErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		if l, err := p.Listen("tcp", "127.0.0.1:-1", 0); err == nil {
			l.Close()
			t.Error("Listen on port -1 succeeded")
		}
		// A port already in use.
		l := listen(t, p, 0)
		if l2, err := p.Listen("tcp", l.Addr().String(), 0); err == nil {
			l2.Close()
			t.Errorf("Listen on %s, in use, succeeded", l.Addr())
		} else {
			var oe *cport.OpError
			if !errors.As(err, &oe) || oe.Op != "listen" {
				t.Errorf("Listen on an address in use: %v; want an *OpError with Op listen", err)
			}
		}
		p.Close()
		if l3, err := p.Listen("tcp", "127.0.0.1:0", 0); !errors.Is(err, cport.ErrClosed) {
			if err == nil {
				l3.Close()
			}
			t.Errorf("Listen after Port.Close = %v; want ErrClosed", err)
		}
	})
}

// TestConformanceAcceptCloseRace: clients keep connecting while the
// listener closes: every accept completes once, and the ErrCanceled
// completion is the last.
func TestConformanceAcceptCloseRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1) // one worker: completions in the order posted
		l := listen(t, p, 1)
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			dialed  atomic.Int64
			stop    = make(chan struct{})
			clients = make(chan net.Conn, 10000)
		)
		t.Cleanup(func() {
			close(clients)
			for c := range clients {
				c.Close()
			}
		})
		for range 2 {
			wg.Go(func() {
				for range cap(clients) / 2 {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", l.Addr().String(), longWait)
					if err != nil {
						return // the listener is closed
					}
					clients <- c
					dialed.Add(1)
				}
			})
		}
		// The listener closes while clients still arrive, once the engine
		// has accepted one (under load it may be behind the dialers).
		if c := s.take(t, "a first accept", isOp(cport.OpAccept)); c.Err != nil {
			t.Fatalf("first accept completion %s; want a conn", describe(&c))
		} else {
			c.Conn.Close()
		}
		eventually(t, "some clients to connect", func() bool { return dialed.Load() > 20 })
		l.Close()
		close(stop)
		wg.Wait()
		for {
			c := s.take(t, "accept", isOp(cport.OpAccept))
			if c.Err == nil {
				c.Conn.Close()
				continue
			}
			if !errors.Is(c.Err, cport.ErrCanceled) {
				t.Fatalf("accept completion %s; want a conn or ErrCanceled", describe(&c))
			}
			break
		}
		s.none(t, "accept after the ErrCanceled one", isOp(cport.OpAccept))
	})
}

// TestConformanceListenNetworks: "tcp4" and "tcp6" listeners accept too.
func TestConformanceListenNetworks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		for _, nw := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
			if ln, err := net.Listen(nw.network, nw.addr); err != nil {
				t.Logf("skipping %s: this machine cannot listen on %s: %v", nw.network, nw.addr, err)
				continue
			} else {
				ln.Close()
			}
			p := openPort(t, b)
			s := collect(t, p, 1)
			l, err := p.Listen(nw.network, nw.addr, 9)
			if err != nil {
				t.Fatalf("Listen(%s, %s): %v", nw.network, nw.addr, err)
			}
			t.Cleanup(func() { l.Close() })
			if err := l.Accept(0); err != nil {
				t.Fatal(err)
			}
			cl := dialOne(t, l.Addr())
			c := s.take(t, "accept", isOp(cport.OpAccept))
			if c.Err != nil || c.Key != 9 {
				t.Fatalf("%s: accept completion %s", nw.network, describe(&c))
			}
			m := cport.MsgOf([]byte(nw.network))
			if err := c.Conn.Send(m, 0); err != nil {
				t.Fatal(err)
			}
			m.Release()
			if got := mustReadN(t, cl, len(nw.network)); string(got) != nw.network {
				t.Errorf("%s: client read %q", nw.network, got)
			}
			c.Conn.Close()
		}
	})
}

// TestConformanceAcceptLocalAddr: connections accepted by a listener bound
// to every address keep each its own local address (Conns of one listener
// share the address they have in common: a change must not leak to the
// others).
func TestConformanceAcceptLocalAddr(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 4)
		l, err := p.Listen("tcp4", "0.0.0.0:0", 5)
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		if err := l.AcceptMulti(1); err != nil {
			t.Fatalf("AcceptMulti: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		// 127.0.0.1, 127.0.0.2, 127.0.0.1 again: the last is the first's
		// local address after another one.
		var conns []*cport.Conn
		var want []string
		for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.1"} {
			cl := dialOne(t, &net.TCPAddr{IP: net.ParseIP(ip), Port: port})
			c := s.take(t, "accept from "+ip, isOp(cport.OpAccept))
			if c.Err != nil || c.Conn == nil {
				t.Fatalf("accept completion %s", describe(&c))
			}
			t.Cleanup(func() { c.Conn.Close() })
			conns = append(conns, c.Conn)
			want = append(want, cl.RemoteAddr().String())
		}
		for i, c := range conns {
			if got := c.LocalAddr().String(); got != want[i] {
				t.Errorf("connection %d: Conn.LocalAddr() = %s; want %s", i, got, want[i])
			}
		}
	})
}

// TestConformanceAcceptAgain: a single accept started again from its own
// completion, by a handler before it returns, is not lost: an engine that
// ends the accept it reported must not end the new one with it (epoll
// did, the new accept then never completing, not even at Close).
func TestConformanceAcceptAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const n = 50
		accepted := make(chan *cport.Conn, n+1)
		var l *cport.Listener
		ready := make(chan struct{})
		p := openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
			if c.Op != cport.OpAccept {
				c.Release()
				return
			}
			<-ready
			if c.Err != nil {
				accepted <- nil
				return
			}
			if err := l.Accept(1); err != nil {
				t.Errorf("Accept again from the handler: %v", err)
			}
			accepted <- c.Conn
		}})
		l = listen(t, p, 1)
		close(ready)
		if err := l.Accept(1); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			dialOne(t, l.Addr())
			select {
			case c := <-accepted:
				if c == nil {
					t.Fatalf("accept %d failed", i)
				}
				c.Close()
			case <-time.After(longWait):
				t.Fatalf("accept %d (started again by the handler of the one before) did not complete within %v", i, longWait)
			}
		}
		// The last one, started again, ends at Close.
		l.Close()
		select {
		case c := <-accepted:
			if c != nil {
				t.Fatal("an accept completed with a connection after Close")
			}
		case <-time.After(longWait):
			t.Fatalf("the accept in progress did not end at Close within %v", longWait)
		}
	})
}
