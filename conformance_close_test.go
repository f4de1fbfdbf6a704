package cport_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// closeWithin closes p in a goroutine, failing t if Close does not return
// within longWait.
func closeWithin(t testing.TB, p *cport.Port) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Port.Close: %v", err)
		}
	case <-time.After(longWait):
		t.Fatalf("Port.Close did not return within %v", longWait)
	}
}

// TestConformancePortCloseWaiters: closing the port returns ErrClosed to
// every blocked waiter; later Wait and Post return ErrClosed; Close twice
// is fine.
func TestConformancePortCloseWaiters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const waiters = 8
		p := openPort(t, b, cport.Config{Concurrency: 2})
		errs := make(chan error, waiters)
		for i := range waiters {
			w := p.Worker()
			timeout := time.Duration(-1)
			if i%2 == 1 {
				timeout = time.Hour // timed waits are woken too
			}
			go func() {
				n, err := w.Wait(make([]cport.Completion, 1+i), timeout)
				if n != 0 {
					err = errors.New("got a completion from an idle port")
				}
				errs <- err
			}()
		}
		// Absence check: the waiters block (so that Close finds them waiting).
		time.Sleep(grace)
		if len(errs) != 0 {
			t.Fatalf("a waiter returned %v before Close", <-errs)
		}
		closeWithin(t, p)
		for range waiters {
			select {
			case err := <-errs:
				if !errors.Is(err, cport.ErrClosed) {
					t.Errorf("blocked Wait after Close = %v; want ErrClosed", err)
				}
			case <-time.After(longWait):
				t.Fatal("a blocked waiter did not return after Close")
			}
		}
		w := p.Worker()
		for _, timeout := range []time.Duration{-1, 0, time.Millisecond} {
			if n, err := w.Wait(make([]cport.Completion, 2), timeout); n != 0 || !errors.Is(err, cport.ErrClosed) {
				t.Errorf("Wait(%v) after Close = %d, %v; want ErrClosed", timeout, n, err)
			}
		}
		if _, err := w.WaitOne(-1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("WaitOne after Close = %v; want ErrClosed", err)
		}
		if err := p.Post(1, 2, 3); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Post after Close = %v; want ErrClosed", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("second Close = %v; want nil", err)
		}
		if n := p.Conns(); n != 0 {
			t.Errorf("Conns() = %d after Close", n)
		}
	})
}

// TestConformancePortCloseDropsQueued: completions queued and not dequeued
// are dropped by Close, receive completions included.
func TestConformancePortCloseDropsQueued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		for i := range 100 {
			if err := p.Post(0, uint64(i), 0); err != nil {
				t.Fatal(err)
			}
		}
		// A receive completion too, queued unreleased: accept and receive
		// with a worker, then leave the receive's completion in the queue.
		l := listen(t, p, 1)
		if err := l.Accept(0); err != nil {
			t.Fatal(err)
		}
		cl := dialOne(t, l.Addr())
		w := p.Worker()
		var conn *cport.Conn
		for conn == nil {
			c, err := w.WaitOne(longWait)
			if err != nil {
				t.Fatal(err)
			}
			if c.Op == cport.OpAccept {
				conn = c.Conn
			}
		}
		if err := conn.RecvMulti(0); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, []byte("dropped"))
		// The receive's completion is queued behind the posts, or about to
		// be: Close drops it either way, and Wait sees none of them.
		closeWithin(t, p)
		if n, err := w.Wait(make([]cport.Completion, 8), 0); n != 0 || !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Wait after Close with completions queued = %d, %v; want ErrClosed", n, err)
		}
		if err := conn.Recv(0); err == nil {
			t.Error("Recv on a conn of a closed port succeeded")
		}
	})
}

// TestConformancePortCloseBusy: Close with sends pending to clients that do
// not read, receives pending, receive completions unreleased, an accept
// pending and workers running does not hang, and leaves no goroutine.
// Releasing a completion after Close is harmless; the conns are closed.
func TestConformancePortCloseBusy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const n = 16
		p := openPort(t, b)
		s := collect(t, p, 2)
		conns, clients := acceptN(t, p, s, n)
		l := listen(t, p, 2)
		if err := l.AcceptMulti(0); err != nil { // pending at Close
			t.Fatal(err)
		}
		big := cport.NewMsg(mib)
		var held []cport.Completion
		for i, conn := range conns {
			cl := clients[i]
			cl.SetReadBuffer(16 << 10)
			switch i % 4 {
			case 0: // a receive pending
				if err := conn.RecvMulti(0); err != nil {
					t.Fatal(err)
				}
			case 1: // a receive completion unreleased, more data behind it
				if err := conn.RecvMulti(0); err != nil {
					t.Fatal(err)
				}
				mustWrite(t, cl, []byte("held"))
				c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
				held = append(held, c)
				mustWrite(t, cl, []byte("behind"))
			case 2: // sends pending to a client that does not read
				for range 4 {
					if err := conn.Send(big, 0); err != nil {
						t.Fatal(err)
					}
				}
				if err := conn.SendQuiet(big); err != nil {
					t.Fatal(err)
				}
			case 3: // everything
				if err := conn.Recv(0); err != nil {
					t.Fatal(err)
				}
				if err := conn.Send(big, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		big.Release()
		for range 10 {
			if err := p.Post(0, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		closeWithin(t, p)
		for i := range held {
			held[i].Release() // after Close: harmless
		}
		if n := p.Conns(); n != 0 {
			t.Errorf("Conns() = %d after Close", n)
		}
		for i, conn := range conns {
			m := cport.MsgOf([]byte("x"))
			if err := conn.Send(m, 0); err == nil {
				t.Errorf("conn %d: Send after Port.Close succeeded", i)
			} else if !errors.Is(err, net.ErrClosed) && !errors.Is(err, cport.ErrClosed) {
				t.Errorf("conn %d: Send after Port.Close = %v; want net.ErrClosed or ErrClosed", i, err)
			}
			m.Release()
			if err := conn.RecvMulti(0); err == nil {
				t.Errorf("conn %d: RecvMulti after Port.Close succeeded", i)
			}
		}
		if err := l.Accept(0); err == nil {
			t.Error("Accept after Port.Close succeeded")
		}
		// The clients with nothing left to read see their connections end.
		// (The others would have the kernel's leftovers to drain, through a
		// tiny window: a matter of TCP, not of the port.)
		for i, cl := range clients {
			if i%4 >= 2 {
				continue
			}
			cl.SetReadDeadline(time.Now().Add(longWait))
			if _, err := io.Copy(io.Discard, cl); err != nil && !isSendFailure(err) {
				t.Errorf("client %d reading to the end: %v", i, err)
			}
		}
	})
}

// TestConformancePortCloseFromWorker: a worker may close the port while
// handling a completion, other workers running.
func TestConformancePortCloseFromWorker(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		var handled atomic.Int64
		closed := make(chan struct{})
		runWorkers(t, p, 4, 2, func(c *cport.Completion) {
			if handled.Add(1) == 500 {
				p.Close()
				close(closed)
			}
		})
		for i := range 1000 {
			if err := p.Post(0, uint64(i), 0); err != nil {
				if !errors.Is(err, cport.ErrClosed) {
					t.Fatalf("Post: %v", err)
				}
				break
			}
		}
		select {
		case <-closed:
		case <-time.After(longWait):
			t.Fatal("the port was not closed by its worker")
		}
		if err := p.Post(0, 0, 0); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Post after Close = %v; want ErrClosed", err)
		}
	})
}

// TestConformancePortCloseRace: Close races with many concurrent sends,
// receives and posts. Run it under -race. Nothing may panic or hang; calls
// after Close fail.
func TestConformancePortCloseRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		n := 16
		if testing.Short() {
			n = 8
		}
		p := openPort(t, b, cport.Config{RecvBufferSize: 512})
		var (
			mu    sync.Mutex
			conns []*cport.Conn
			recvd atomic.Int64
		)
		l := listen(t, p, 1)
		runWorkers(t, p, 3, 8, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					return // canceled by Close
				}
				mu.Lock()
				conns = append(conns, c.Conn)
				mu.Unlock()
				c.Conn.RecvMulti(0)
			case cport.OpRecv:
				if c.Err == nil {
					recvd.Add(int64(c.N))
					m := cport.MsgOf(c.Buf) // echo
					c.Conn.Send(m, 1)
					m.Release()
				}
				c.Release()
			}
		})
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		clients := dial(t, l.Addr(), n)
		eventually(t, "every client to be accepted", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(conns) == n
		})
		// The clients write and read as fast as they can until the port
		// closes their connections.
		var cwg sync.WaitGroup
		for i, cl := range clients {
			cl.SetDeadline(time.Now().Add(longWait))
			cwg.Go(func() {
				buf := make([]byte, 1000+i)
				for {
					if _, err := cl.Write(buf); err != nil {
						return
					}
				}
			})
			cwg.Go(func() { io.Copy(io.Discard, cl) })
		}
		// Senders from other goroutines, and posters.
		stop := make(chan struct{})
		var swg sync.WaitGroup
		for g := range 4 {
			swg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 0))
				m := cport.MsgOf(make([]byte, 300))
				defer m.Release()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					c := conns[rng.IntN(len(conns))]
					mu.Unlock()
					var err error
					if rng.IntN(2) == 0 {
						err = c.Send(m, 2)
					} else {
						err = c.SendQuiet(m)
					}
					if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, cport.ErrClosed) {
						var oe *cport.OpError
						if !errors.As(err, &oe) {
							t.Errorf("Send during Close: %v", err)
						}
					}
					if c.Queued() > 4*mib { // a client that does not keep up
						time.Sleep(time.Millisecond)
					}
				}
			})
			swg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := p.Post(0, uint64(i), 0); err != nil {
						if !errors.Is(err, cport.ErrClosed) {
							t.Errorf("Post during Close: %v", err)
						}
						return
					}
					if i%64 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		eventually(t, "traffic to flow", func() bool { return recvd.Load() > 1*mib })
		closeWithin(t, p)
		close(stop)
		waitGroup(t, &swg, "the senders to stop")
		for _, cl := range clients {
			cl.Close()
		}
		waitGroup(t, &cwg, "the clients to stop")
		for i, c := range conns {
			m := cport.MsgOf([]byte("x"))
			if err := c.Send(m, 0); err == nil {
				t.Errorf("conn %d: Send after Close succeeded", i)
			}
			m.Release()
		}
		if err := p.Post(0, 0, 0); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Post after Close = %v", err)
		}
	})
}
