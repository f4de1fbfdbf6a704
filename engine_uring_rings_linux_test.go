package cport

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// uringRingsEnv is the uring engine's environment variable for its number
// of rings.
const uringRingsEnv = "CPORT_URING_RINGS"

// TestURingRings runs a fan-out on a port of three rings: connections are
// dealt to every ring, and each client gets every message of every sender,
// in each sender's order, whatever rings the sender and it are on. (The
// conformance suite runs on the default count, one ring on small machines;
// .ci/run runs it again on three.)
func TestURingRings(t *testing.T) {
	p, err := Open(Config{Backend: "uring", Rings: 3})
	if err != nil {
		t.Skipf("uring unavailable here: %v", err)
	}
	if n := p.eng.Stats().Loops; n != 3 {
		p.Close()
		t.Fatalf("%d rings; want 3 (Config.Rings)", n)
	}
	ln, err := p.Listen("tcp", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.AcceptMulti(0); err != nil {
		t.Fatal(err)
	}

	const clients, msgs = 12, 200
	var (
		mu    sync.Mutex
		conns []*Conn
	)
	epollServe(t, p, 2, func(c *Completion) {
		switch {
		case c.Op == OpAccept && c.Err == nil:
			mu.Lock()
			conns = append(conns, c.Conn)
			mu.Unlock()
			c.Conn.RecvMulti(0)
		case c.Op == OpRecv && c.Err == nil:
			// Queued everywhere before the release lets the connection's
			// next receive complete.
			m := MsgOf(c.Buf)
			mu.Lock()
			for _, to := range conns {
				to.SendQuiet(m)
			}
			mu.Unlock()
			m.Release()
			c.Release()
		case c.Op == OpRecv:
			c.Conn.Close()
		}
	})

	cls := make([]net.Conn, clients)
	for i := range cls {
		if cls[i], err = net.DialTimeout("tcp", ln.Addr().String(), epollLongWait); err != nil {
			t.Fatal(err)
		}
		defer cls[i].Close()
	}
	epollEventually(t, "every client to be accepted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(conns) == clients
	})
	// Dealt round robin, each ring taking its connections in with their
	// first request (the RecvMulti above).
	var held []int
	epollEventually(t, "every connection to be held by a ring", func() bool {
		held = p.eng.Stats().LoopConns
		n := 0
		for _, h := range held {
			n += h
		}
		return n == clients
	})
	for i, h := range held {
		if h != clients/3 {
			t.Errorf("ring %d holds %d connections (%v); want %d", i, h, held, clients/3)
		}
	}

	errs := make(chan error, clients)
	for i, cl := range cls {
		go func() {
			// One message a line, "sender seq", a few to a write.
			for seq := 0; seq < msgs; seq += 5 {
				var b []byte
				for k := seq; k < seq+5; k++ {
					b = fmt.Appendf(b, "%d %d\n", i, k)
				}
				if _, err := cl.Write(b); err != nil {
					errs <- err
					return
				}
			}
			next := make([]int, clients)
			cl.SetReadDeadline(time.Now().Add(3 * epollLongWait))
			sc := bufio.NewScanner(cl)
			for got := 0; got < clients*msgs; got++ {
				if !sc.Scan() {
					errs <- fmt.Errorf("client %d: after %d messages: %v", i, got, sc.Err())
					return
				}
				var from, seq int
				if _, err := fmt.Sscanf(sc.Text(), "%d %d", &from, &seq); err != nil || from < 0 || from >= clients {
					errs <- fmt.Errorf("client %d: message %q", i, sc.Text())
					return
				}
				if seq != next[from] {
					errs <- fmt.Errorf("client %d: sender %d's message %d, want %d", i, from, seq, next[from])
					return
				}
				next[from]++
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestURingRingsEnvInvalid: a bad CPORT_URING_RINGS is an error, also for
// "auto", which does not pass over uring for it as it would for a kernel
// that refuses io_uring.
func TestURingRingsEnvInvalid(t *testing.T) {
	if p, err := Open(Config{Backend: "uring"}); err != nil {
		t.Skipf("uring unavailable here: %v", err)
	} else {
		p.Close()
	}
	for _, v := range []string{"abc", "0", "65"} {
		t.Setenv(uringRingsEnv, v)
		for _, backend := range []string{"uring", "auto"} {
			p, err := Open(Config{Backend: backend})
			if err == nil {
				p.Close()
				t.Fatalf("%s=%q: Open(%s) succeeded with %s", uringRingsEnv, v, backend, p.Backend())
			}
			if !strings.Contains(err.Error(), uringRingsEnv) || errors.Is(err, ErrUnavailable) {
				t.Errorf("%s=%q: Open(%s): %v; want an error naming the variable, not ErrUnavailable", uringRingsEnv, v, backend, err)
			}
		}
	}
}

// TestURingConfigInvalid: ring sizes out of range are an error, not
// ErrUnavailable, also for "auto"; Config.Rings, when set, overrides
// CPORT_URING_RINGS.
func TestURingConfigInvalid(t *testing.T) {
	if p, err := Open(Config{Backend: "uring"}); err != nil {
		t.Skipf("uring unavailable here: %v", err)
	} else {
		p.Close()
	}
	for _, cfg := range []Config{
		{Rings: -1}, {Rings: 65},
		{RingEntries: -1}, {RingEntries: 3}, {RingEntries: 65536},
		{RecvBuffers: -4}, {RecvBuffers: 1000}, {RecvBuffers: 65536},
	} {
		for _, backend := range []string{"uring", "auto"} {
			cfg.Backend = backend
			p, err := Open(cfg)
			if err == nil {
				p.Close()
				t.Fatalf("Open(%+v) succeeded with %s", cfg, p.Backend())
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("Open(%+v): %v; want an error that is not ErrUnavailable", cfg, err)
			}
		}
	}
	t.Setenv(uringRingsEnv, "65")
	p, err := Open(Config{Backend: "uring", Rings: 2, RingEntries: 8, RecvBuffers: 32768, RecvBufferSize: 256})
	if err != nil {
		t.Fatalf("Open with Rings 2 and %s=65: %v", uringRingsEnv, err)
	}
	defer p.Close()
	if n := p.eng.Stats().Loops; n != 2 {
		t.Errorf("%d rings; want 2 (Config.Rings)", n)
	}
}
