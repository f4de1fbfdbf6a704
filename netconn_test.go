package cport_test

// The net.Conn and net.Listener adapters (Conn.NetConn,
// Listener.NetListener, Port.DialNet), on every engine: x/net's nettest
// conformance suite, crypto/tls and net/http over them, and their misuse.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"cport.dev/cport"
	"cport.dev/cport/internal/testcert"
)

// netListen opens a listener on 127.0.0.1:0 adapted to net.Listener,
// closed when the test ends.
func netListen(t testing.TB, p *cport.Port) *cport.NetListener {
	t.Helper()
	l := listen(t, p, 1)
	nl, err := l.NetListener()
	if err != nil {
		t.Fatalf("NetListener: %v", err)
	}
	return nl
}

// netPipe returns a pair of connected NetConns of p: c1 dialed with
// DialNet, c2 accepted on nl. With plain, c1 is of Go's net instead.
func netPipe(p *cport.Port, nl *cport.NetListener, plain bool) (c1, c2 net.Conn, err error) {
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := nl.Accept()
		ch <- accepted{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	if plain {
		var d net.Dialer
		c1, err = d.DialContext(ctx, "tcp", nl.Addr().String())
	} else {
		c1, err = p.DialNet(ctx, "tcp", nl.Addr().String())
	}
	a := <-ch
	if err != nil || a.err != nil {
		if c1 != nil {
			c1.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		return nil, nil, errors.Join(err, a.err)
	}
	return c1, a.c, nil
}

// TestNetConnNettest: x/net's nettest.TestConn on pairs of NetConns (one
// dialed with DialNet, one accepted on a NetListener) of a port with no
// workers at all, all completions going to the adapters; and on a mixed
// pair, a NetConn accepted on a port with a Config.Handler (which must
// see none of its completions) and a client of Go's net, both ways round.
func TestNetConnNettest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		t.Run("cport", func(t *testing.T) {
			p := openPort(t, b)
			nl := netListen(t, p)
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				c1, c2, err = netPipe(p, nl, false)
				return c1, c2, func() { c1.Close(); c2.Close() }, err
			})
		})
		for _, cportFirst := range []bool{true, false} {
			name := "mixed/net-cport"
			if cportFirst {
				name = "mixed/cport-net"
			}
			t.Run(name, func(t *testing.T) {
				fail := limitErrors(t)
				p := openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
					fail("the handler got a completion of an adapter's: %s", describe(&c))
					c.Release()
				}})
				nl := netListen(t, p)
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					c1, c2, err = netPipe(p, nl, true)
					if cportFirst {
						c1, c2 = c2, c1
					}
					return c1, c2, func() { c1.Close(); c2.Close() }, err
				})
			})
		}
	})
}

// TestNetConnSemantics: what net.Conn's callers rely on beyond nettest:
// io.EOF at the peer's close, and again; CloseWrite's half-close, reads
// going on; a Read's leftover kept for the next Read; a Write of many
// megabytes whole; the errors of a closed NetConn matching net.ErrClosed,
// Close twice included; addresses.
func TestNetConnSemantics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		nl := netListen(t, p)
		c1, c2, err := netPipe(p, nl, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		defer c2.Close()
		if c1.LocalAddr().String() != c2.RemoteAddr().String() || c1.RemoteAddr().String() != c2.LocalAddr().String() {
			t.Errorf("addresses: c1 %v -> %v, c2 %v -> %v; want them crossed", c1.LocalAddr(), c1.RemoteAddr(), c2.LocalAddr(), c2.RemoteAddr())
		}

		// Many megabytes one way, read in small pieces (leftovers), while
		// the other way is half-closed.
		want := pattern(5*mib + 123)
		werr := make(chan error, 1)
		go func() {
			_, err := c1.Write(want)
			if err == nil {
				err = c1.(*cport.NetConn).CloseWrite()
			}
			werr <- err
		}()
		var got bytes.Buffer
		buf := make([]byte, 1000)
		for {
			n, err := c2.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Read after %d bytes: %v", got.Len(), err)
			}
		}
		if err := <-werr; err != nil {
			t.Fatalf("Write of %d bytes, CloseWrite: %v", len(want), err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read %d bytes, differing at %d; want the %d written", got.Len(), firstDiff(got.Bytes(), want), len(want))
		}
		if n, err := c2.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end of stream = %d, %v; want 0, io.EOF again", n, err)
		}
		// Half-closed: the other way still works.
		if _, err := c2.Write([]byte("back")); err != nil {
			t.Fatalf("Write on the side that read the end of stream: %v", err)
		}
		if b := mustReadN(t, c1, 4); string(b) != "back" {
			t.Fatalf("read %q; want \"back\"", b)
		}
		if _, err := c1.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after CloseWrite = %v; want an error matching net.ErrClosed", err)
		}
		if err := c2.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if n, err := c1.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after the peer's Close = %d, %v; want 0, io.EOF", n, err)
		}
		for what, err := range map[string]error{
			"Close again": c2.Close(),
			"Read":        func() error { _, err := c2.Read(buf); return err }(),
			"Write":       func() error { _, err := c2.Write(buf); return err }(),
			"SetDeadline": c2.SetDeadline(time.Now()),
		} {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s on a closed NetConn = %v; want an error matching net.ErrClosed", what, err)
			}
		}
	})
}

// TestNetConnCloseUnblocks: Close, and the port's Close, end a Read and a
// Write blocked (the peer reads nothing), and an Accept blocked, with
// errors matching net.ErrClosed; a passed deadline ends them with a
// timeout, and extending it lets them go on.
func TestNetConnCloseUnblocks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		for _, how := range []string{"conn", "port"} {
			t.Run(how, func(t *testing.T) {
				p := openPort(t, b)
				nl := netListen(t, p)
				// The peer on a port of its own, which stays open: the
				// port's Close must end the calls, not the peer's reset
				// (Windows resets a connection closed with unread bytes).
				peer := openPort(t, b)
				c1, c2, err := netPipe(p, netListen(t, peer), false)
				if err != nil {
					t.Fatal(err)
				}
				defer c2.Close()
				// Write until one blocks: the peer reads nothing.
				errs := make(chan error, 3)
				blockBoth(c1, errs)
				go func() {
					_, err := nl.Accept()
					errs <- err
				}()
				// The writer is blocked once the port holds a megabyte it
				// cannot write.
				nc1 := c1.(*cport.NetConn)
				eventually(t, "a Write to block", func() bool { return nc1.Conn().Queued() > 0 })
				if how == "conn" {
					c1.Close()
					nl.Close()
				} else {
					p.Close()
				}
				for range 3 {
					select {
					case err := <-errs:
						if !errors.Is(err, net.ErrClosed) {
							t.Errorf("a blocked call ended with %v; want an error matching net.ErrClosed", err)
						}
					case <-time.After(longWait):
						t.Fatalf("a blocked call did not return within %v of the close", longWait)
					}
				}
			})
		}
		t.Run("deadline", func(t *testing.T) {
			p := openPort(t, b)
			nl := netListen(t, p)
			c1, c2, err := netPipe(p, nl, false)
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()
			defer c2.Close()
			errs := make(chan error, 2)
			blockBoth(c1, errs)
			nc1 := c1.(*cport.NetConn)
			eventually(t, "a Write to block", func() bool { return nc1.Conn().Queued() > 0 })
			c1.SetDeadline(time.Now().Add(-time.Second))
			for range 2 {
				err := <-errs
				var ne net.Error
				if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("a blocked call at a past deadline ended with %v; want a net.Error timeout matching os.ErrDeadlineExceeded", err)
				}
			}
			// Extended: the stream goes on, nothing lost or torn.
			c1.SetDeadline(time.Time{})
			if _, err := c2.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if got := mustReadN(t, c1, 4); string(got) != "ping" {
				t.Fatalf("read %q after the deadline was cleared; want \"ping\"", got)
			}
		})
	})
}

// TestNetConnMisuse: adapting twice, adapting a connection with a receive
// armed or a listener with an accept in progress, and using the Conn's or
// Listener's own operations after adapting, are errors that change
// nothing.
func TestNetConnMisuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		conn, cl := acceptOne(t, p, s)
		if err := conn.Recv(1); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.NetConn(); !errors.Is(err, cport.ErrBusy) {
			t.Fatalf("NetConn with a receive armed = %v; want ErrBusy", err)
		}
		mustWrite(t, cl, []byte("abc"))
		c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
		if string(c.Buf) != "abc" {
			t.Fatalf("received %q; want \"abc\"", c.Buf)
		}
		if _, err := conn.NetConn(); !errors.Is(err, cport.ErrBusy) {
			t.Fatalf("NetConn with a receive's completion held = %v; want ErrBusy", err)
		}
		c.Release()
		nc, err := conn.NetConn()
		if err != nil {
			t.Fatalf("NetConn of an idle connection: %v", err)
		}
		if nc.Conn() != conn {
			t.Fatal("NetConn.Conn() is not the adapted Conn")
		}
		if _, err := conn.NetConn(); !errors.Is(err, cport.ErrAdapted) {
			t.Fatalf("NetConn twice = %v; want ErrAdapted", err)
		}
		m := cport.MsgOf([]byte("no"))
		defer m.Release()
		for what, err := range map[string]error{
			"Recv":      conn.Recv(2),
			"RecvMulti": conn.RecvMulti(2),
			"Send":      conn.Send(m, 2),
			"SendQuiet": conn.SendQuiet(m),
		} {
			if !errors.Is(err, cport.ErrAdapted) {
				t.Errorf("%s on an adapted Conn = %v; want ErrAdapted", what, err)
			}
		}
		if _, err := conn.Detach(); !errors.Is(err, cport.ErrAdapted) && !errors.Is(err, cport.ErrUnsupported) {
			t.Errorf("Detach of an adapted Conn = %v; want ErrAdapted (or ErrUnsupported)", err)
		}
		// The adapter works: nothing above went through.
		mustWrite(t, cl, []byte("def"))
		if got := mustReadN(t, nc, 3); string(got) != "def" {
			t.Fatalf("NetConn read %q; want \"def\"", got)
		}
		if _, err := nc.Write([]byte("ghi")); err != nil {
			t.Fatal(err)
		}
		if got := mustReadN(t, cl, 3); string(got) != "ghi" {
			t.Fatalf("client read %q; want \"ghi\"", got)
		}
		s.none(t, "completion of an adapted Conn on the queue", isOpOf(cport.OpRecv, conn))
		s.none(t, "completion of an adapted Conn on the queue", isOpOf(cport.OpSend, conn))

		l := listen(t, p, 7)
		if err := l.Accept(1); err != nil {
			t.Fatal(err)
		}
		if _, err := l.NetListener(); !errors.Is(err, cport.ErrBusy) {
			t.Fatalf("NetListener with an accept in progress = %v; want ErrBusy", err)
		}
		l.Close()
		s.take(t, "accept", isOp(cport.OpAccept))
		if _, err := l.NetListener(); !errors.Is(err, cport.ErrClosed) {
			t.Fatalf("NetListener of a closed listener = %v; want ErrClosed", err)
		}
		l2 := listen(t, p, 8)
		if _, err := l2.NetListener(); err != nil {
			t.Fatal(err)
		}
		if _, err := l2.NetListener(); !errors.Is(err, cport.ErrAdapted) {
			t.Fatalf("NetListener twice = %v; want ErrAdapted", err)
		}
		if err := l2.Accept(1); !errors.Is(err, cport.ErrAdapted) {
			t.Fatalf("Accept on an adapted listener = %v; want ErrAdapted", err)
		}
		if err := l2.AcceptMulti(1); !errors.Is(err, cport.ErrAdapted) {
			t.Fatalf("AcceptMulti on an adapted listener = %v; want ErrAdapted", err)
		}
	})
}

// TestNetConnDialNet: DialNet's failures: a refused connection, a context
// done first (a timeout), a closed port.
func TestNetConnDialNet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		// A port nobody listens on: bind one, and close it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, err := p.DialNet(context.Background(), "tcp", addr); err == nil {
			t.Fatal("DialNet to a closed port succeeded")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var ne net.Error
		if _, err := p.DialNet(ctx, "tcp", addr); !errors.Is(err, context.Canceled) {
			t.Fatalf("DialNet with a done context = %v; want context.Canceled", err)
		}
		ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		if _, err := p.DialNet(ctx, "tcp", addr); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("DialNet past its context's deadline = %v; want a net.Error timeout", err)
		}
		p.Close()
		if _, err := p.DialNet(context.Background(), "tcp", addr); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("DialNet on a closed port = %v; want an error matching net.ErrClosed", err)
		}
	})
}

// testCert returns a self-signed certificate for 127.0.0.1 and a pool
// that trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, pool, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	return cert, pool
}

// TestNetConnTLS: crypto/tls's server over a NetConn accepted on the port,
// a client of Go's net dialing it with tls.Dial: a megabyte each way, then
// close_notify and the end of stream.
func TestNetConnTLS(t *testing.T) {
	cert, pool := testCert(t)
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		nl := netListen(t, p)
		want := pattern(mib)
		srvErr := make(chan error, 1)
		go func() {
			srvErr <- func() error {
				c, err := nl.Accept()
				if err != nil {
					return err
				}
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				defer tc.Close()
				tc.SetDeadline(time.Now().Add(longWait))
				got := make([]byte, len(want))
				if _, err := io.ReadFull(tc, got); err != nil {
					return err
				}
				if !bytes.Equal(got, want) {
					return errors.New("the server read other bytes than the client wrote")
				}
				_, err = tc.Write(got) // echoed
				return err
			}()
		}()
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: longWait}, "tcp", nl.Addr().String(), &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatalf("tls.Dial: %v", err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(longWait))
		if _, err := tc.Write(want); err != nil {
			t.Fatalf("client Write: %v", err)
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(tc, got); err != nil {
			t.Fatalf("client Read: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("the echo differs at %d", firstDiff(got, want))
		}
		if err := <-srvErr; err != nil {
			t.Fatalf("server: %v", err)
		}
		if n, err := tc.Read(got[:1]); n != 0 || err != io.EOF {
			t.Fatalf("client Read after the server's Close = %d, %v; want 0, io.EOF (close_notify)", n, err)
		}
	})
}

// TestNetConnHTTP: net/http's Server serving on a NetListener, clients of
// Go's net (keep-alive, several at once) and of the port (DialNet as the
// transport's dialer), then Shutdown.
func TestNetConnHTTP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		nl := netListen(t, p)
		body := pattern(100000)
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				in, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				w.Write(in)
				w.Write(body)
			}),
			ReadHeaderTimeout: longWait,
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(nl) }()
		for _, viaPort := range []bool{false, true} {
			tr := &http.Transport{}
			if viaPort {
				tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
					return p.DialNet(ctx, network, addr)
				}
			}
			client := &http.Client{Transport: tr, Timeout: longWait}
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					for j := range 5 {
						req := []byte{byte(i), byte(j)}
						resp, err := client.Post("http://"+nl.Addr().String()+"/", "application/octet-stream", bytes.NewReader(req))
						if err != nil {
							t.Errorf("POST (via port %v): %v", viaPort, err)
							return
						}
						got, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, append(req, body...)) {
							t.Errorf("POST (via port %v): status %d, %d bytes, %v; want 200 and %d bytes", viaPort, resp.StatusCode, len(got), err, len(body)+2)
							return
						}
					}
				})
			}
			wg.Wait()
			tr.CloseIdleConnections()
		}
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v; want http.ErrServerClosed", err)
		}
	})
}

// blockBoth starts a Write of c that goes on until it fails (the peer
// reads nothing: one Write blocks) and a Read of c, each sending its error
// to errs.
func blockBoth(c net.Conn, errs chan<- error) {
	go func() {
		big := make([]byte, mib)
		for {
			if _, err := c.Write(big); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		_, err := c.Read(make([]byte, 10))
		errs <- err
	}()
}
