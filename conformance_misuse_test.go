package cport_test

// Misuse of the API: each case is an error or a documented panic, the same
// on every engine, and the port goes on serving afterwards.

import (
	"errors"
	"net"
	"strings"
	"testing"

	"cport.dev/cport"
)

// closedErr fails t unless err is cport.ErrClosed, matched by net.ErrClosed
// too.
func closedErr(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, cport.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("%s = %v; want cport.ErrClosed, which is net.ErrClosed too", what, err)
	}
}

// mustPanic runs f and fails t unless it panics with a message containing
// want.
func mustPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("%s did not panic", what)
			return
		}
		if s, _ := r.(string); !strings.Contains(s, want) {
			t.Errorf("%s panicked with %v; want a message containing %q", what, r, want)
		}
	}()
	f()
}

// TestConformanceMisuseRelease: a receive completion released twice, through
// a copy, panics with a clear message instead of handing its buffer to two
// receives; releasing the same value twice does nothing; the connection goes
// on receiving, in order, afterwards.
func TestConformanceMisuseRelease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.RecvMulti(5); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, []byte("first"))
		c := s.take(t, "recv", isOpOf(cport.OpRecv, conn))
		if c.Err != nil || string(c.Buf) != "first" {
			t.Fatalf("recv %s %q; want \"first\"", describe(&c), c.Buf)
		}
		dup := c
		c.Release()
		if c.Buf != nil {
			t.Error("Buf still set after Release")
		}
		c.Release() // the same value again: nothing
		mustPanic(t, "Release of a copy already released", "already released", dup.Release)

		// The buffer was not given back twice: every next message arrives
		// whole and in order, each in a buffer of its own.
		var got []byte
		for want := len("0123456789") * 20; len(got) < want; {
			if len(got)%10 == 0 && len(got)/10 < 20 {
				mustWrite(t, cl, []byte("0123456789"))
			}
			c := s.take(t, "recv", isOpOf(cport.OpRecv, conn))
			if c.Err != nil {
				t.Fatalf("recv: %v", c.Err)
			}
			got = append(got, c.Buf...)
			c.Release()
		}
		if want := strings.Repeat("0123456789", 20); string(got) != want {
			t.Fatalf("received %q; want %q", got, want)
		}
	})
}

// TestConformanceMisuseAfterClose: every call on a closed connection,
// listener or port is ErrClosed (errors.Is net.ErrClosed), on every engine,
// and Conns counts exactly through every order of closing.
func TestConformanceMisuseAfterClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p, err := cport.Open(cport.Config{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		checkLeaks(t)
		s := collect(t, p, 1)
		l, err := p.Listen("tcp", "127.0.0.1:0", 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.AcceptMulti(1); err != nil {
			t.Fatal(err)
		}
		cls := dial(t, l.Addr(), 3)
		var conns []*cport.Conn
		for range cls {
			a := s.take(t, "accept", isOp(cport.OpAccept))
			if a.Err != nil {
				t.Fatal(a.Err)
			}
			conns = append(conns, a.Conn)
		}
		if n := p.Conns(); n != 3 {
			t.Fatalf("Conns() = %d; want 3", n)
		}

		conns[0].Close()
		if n := p.Conns(); n != 2 {
			t.Fatalf("Conns() after one Close = %d; want 2", n)
		}
		m := cport.MsgOf([]byte("x"))
		defer m.Release()
		closedErr(t, "Send after Conn.Close", conns[0].Send(m, 1))
		closedErr(t, "SendQuiet after Conn.Close", conns[0].SendQuiet(m))
		closedErr(t, "Recv after Conn.Close", conns[0].Recv(1))
		closedErr(t, "RecvMulti after Conn.Close", conns[0].RecvMulti(1))
		if err := conns[0].Close(); err != nil {
			t.Errorf("second Conn.Close = %v; want nil", err)
		}

		l.Close()
		closedErr(t, "Accept after Listener.Close", l.Accept(2))
		closedErr(t, "AcceptMulti after Listener.Close", l.AcceptMulti(2))

		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if n := p.Conns(); n != 0 {
			t.Fatalf("Conns() after Port.Close = %d; want 0", n)
		}
		for _, c := range conns {
			c.Close() // after the port's Close: counted once, not again
		}
		if n := p.Conns(); n != 0 {
			t.Fatalf("Conns() after closing the conns of a closed port = %d; want 0", n)
		}
		_, err = p.Listen("tcp", "127.0.0.1:0", 1)
		closedErr(t, "Listen after Port.Close", err)
		closedErr(t, "Post after Port.Close", p.Post(1, 2, 3))
		_, err = p.Worker().Wait(make([]cport.Completion, 1), 0)
		closedErr(t, "Wait after Port.Close", err)
		closedErr(t, "Send on a conn of a closed port", conns[1].Send(m, 1))
		if err := p.Close(); err != nil {
			t.Errorf("second Port.Close = %v; want nil", err)
		}
	})
}

// TestConformanceMisuseCanceledIsClosed: an operation canceled by Close
// completes with ErrCanceled, which errors.Is matches to net.ErrClosed too.
func TestConformanceMisuseCanceledIsClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		conn, _ := acceptOne(t, p, s)
		if err := conn.Recv(9); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		c := s.take(t, "recv", isOpOf(cport.OpRecv, conn))
		if !errors.Is(c.Err, cport.ErrCanceled) || !errors.Is(c.Err, net.ErrClosed) {
			t.Fatalf("receive ended by Close: %v; want ErrCanceled, which is net.ErrClosed too", c.Err)
		}
		if errors.Is(c.Err, cport.ErrClosed) {
			t.Errorf("ErrCanceled matches ErrClosed: a worker could take a canceled receive for the port's end")
		}
	})
}
