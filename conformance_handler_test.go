package cport_test

// Config.Handler: completions run on the goroutine that produced them.

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// echoHandler is a run-to-completion echo server: every connection
// accepted receives with RecvMulti, every receive is sent back before it
// is released, and a connection whose receive ends is closed (gracefully:
// what is queued is still written).
func echoHandler(t testing.TB, handled *atomic.Int64) func(cport.Completion) {
	return func(c cport.Completion) {
		handled.Add(1)
		switch c.Op {
		case cport.OpAccept:
			if c.Err == nil {
				if err := c.Conn.RecvMulti(0); err != nil {
					t.Errorf("RecvMulti in a handler: %v", err)
				}
			}
		case cport.OpRecv:
			if c.Err != nil {
				c.Conn.Close()
				return
			}
			m := cport.MsgOf(c.Buf)
			if err := c.Conn.SendQuiet(m); err != nil {
				t.Errorf("SendQuiet in a handler: %v", err)
			}
			m.Release()
			c.Release()
		}
	}
}

// TestHandlerEcho: a port with a Handler echoes every byte of many clients
// writing in pieces of every size, and each client that ends its stream
// gets all of its echo, then the end of stream (the handler's Close).
func TestHandlerEcho(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		var handled atomic.Int64
		p := openPort(t, b, cport.Config{Handler: echoHandler(t, &handled)})
		l := listen(t, p, 1)
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		const clients, size = 16, 64 << 10
		conns := dial(t, l.Addr(), clients)
		var wg sync.WaitGroup
		for i, c := range conns {
			want := make([]byte, size)
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for j := range want {
				want[j] = byte(r.Uint32())
			}
			wg.Go(func() {
				go func() {
					for off := 0; off < size; {
						n := min(1+r.IntN(3000), size-off)
						if _, err := c.Write(want[off : off+n]); err != nil {
							t.Errorf("client %d writing: %v", i, err)
							return
						}
						off += n
					}
					c.CloseWrite()
				}()
				c.SetReadDeadline(time.Now().Add(longWait))
				got, err := io.ReadAll(c)
				if err != nil {
					t.Errorf("client %d reading its echo: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("client %d: echo of %d bytes differs from the %d sent at byte %d", i, len(got), len(want), firstDiff(got, want))
				}
			})
		}
		wg.Wait()
		if handled.Load() < clients*2 {
			t.Errorf("the handler ran %d times for %d clients", handled.Load(), clients)
		}
		eventually(t, "every connection closed", func() bool { return p.Conns() == 0 })
	})
}

// TestHandlerSendChain: a handler that starts the next send from the
// completion of the previous one (a send completion is pushed with no lock
// of the connection held: before, the handler deadlocked on it).
func TestHandlerSendChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const n = 200
		var sent atomic.Int64
		errc := make(chan error, 1)
		fail := func(err error) {
			select {
			case errc <- err:
			default:
			}
		}
		handler := func(c cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					fail(c.Err)
					return
				}
				m := cport.MsgOf([]byte{0})
				if err := c.Conn.Send(m, 0); err != nil {
					fail(err)
				}
				m.Release()
			case cport.OpSend:
				if c.Err != nil {
					fail(c.Err)
					return
				}
				sent.Add(1)
				if c.Tag+1 == n {
					c.Conn.Close()
					return
				}
				m := cport.MsgOf([]byte{byte(c.Tag + 1)})
				if err := c.Conn.Send(m, c.Tag+1); err != nil {
					fail(err)
				}
				m.Release()
			}
		}
		p := openPort(t, b, cport.Config{Handler: handler})
		l := listen(t, p, 1)
		if err := l.Accept(0); err != nil {
			t.Fatal(err)
		}
		c := dialOne(t, l.Addr())
		c.SetReadDeadline(time.Now().Add(longWait))
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the chain: %v", err)
		}
		select {
		case err := <-errc:
			t.Fatalf("handler: %v", err)
		default:
		}
		if len(got) != n {
			t.Fatalf("read %d bytes of a chain of %d sends", len(got), n)
		}
		for i, x := range got {
			if x != byte(i) {
				t.Fatalf("byte %d is %d: sends out of order", i, x)
			}
		}
		if sent.Load() != n {
			t.Fatalf("%d send completions for %d sends", sent.Load(), n)
		}
	})
}

// TestHandlerPortQueue: a handler's port queues nothing: Wait fails with
// ErrHandler, Post runs the handler before it returns, and after Close
// neither Post nor a connection's completions reach the handler.
func TestHandlerPortQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		var posted atomic.Int64
		var closed atomic.Bool
		var after atomic.Int64
		var accepted atomic.Bool
		handler := func(c cport.Completion) {
			if closed.Load() {
				after.Add(1)
			}
			switch c.Op {
			case cport.OpPost:
				posted.Add(int64(c.N))
			case cport.OpAccept:
				if c.Err == nil {
					c.Conn.RecvMulti(0)
					accepted.Store(true)
				}
			case cport.OpRecv:
				c.Release()
			}
		}
		p := openPort(t, b, cport.Config{Handler: handler})
		w := p.Worker()
		var batch [4]cport.Completion
		if _, err := w.Wait(batch[:], -1); !errors.Is(err, cport.ErrHandler) {
			t.Fatalf("Worker.Wait on a handler's port: %v; want ErrHandler", err)
		}
		if err := p.Post(1, 2, 3); err != nil {
			t.Fatal(err)
		}
		if posted.Load() != 3 {
			t.Fatalf("Post returned before the handler ran (posted %d)", posted.Load())
		}
		l := listen(t, p, 1)
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		c := dialOne(t, l.Addr())
		eventually(t, "the accept handled", accepted.Load)
		closed.Store(true)
		p.Close()
		if err := p.Post(1, 2, 3); !errors.Is(err, cport.ErrClosed) {
			t.Fatalf("Post after Close: %v; want ErrClosed", err)
		}
		c.Write([]byte("after close")) // may fail: the port reset it
		if _, err := readN(c, 1); err == nil {
			t.Fatal("the client read data from a closed port")
		}
		if n := after.Load(); n != 0 {
			t.Fatalf("the handler ran %d times after Close", n)
		}
	})
}

// TestHandlerNoAlloc: handing a completion to the handler allocates
// nothing (the handler takes it by value: a pointer to the port's copy
// escaped to the heap once per completion).
func TestHandlerNoAlloc(t *testing.T) {
	var n int
	p := openPort(t, backends(t)[0], cport.Config{Handler: func(c cport.Completion) { n += c.N }})
	allocs := testing.AllocsPerRun(1000, func() {
		if err := p.Post(1, 2, 3); err != nil {
			t.Fatal(err)
		}
	})
	if allocs >= 1 {
		t.Errorf("%.1f allocations per completion handed to the handler; want none", allocs)
	}
	if n != 3*1001 {
		t.Errorf("the handler saw %d; want %d", n, 3*1001)
	}
}
