package cport_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceKeysAndTags: a key set with SetKey before the operations
// is carried by every completion of the conn, each with its op's tag; Post
// carries its own key, tag and count.
func TestConformanceKeysAndTags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 3)
		conn, cl := acceptOne(t, p, s)
		const key = 0xfeedface_00000001
		conn.SetKey(key)
		if conn.Key() != key {
			t.Fatalf("Conn.Key() = %#x after SetKey(%#x)", conn.Key(), uint64(key))
		}
		if err := conn.RecvMulti(11); err != nil {
			t.Fatal(err)
		}
		const sends = 20
		for i := range uint64(sends) {
			m := cport.MsgOf([]byte{byte(i)})
			if err := conn.Send(m, 100+i); err != nil {
				t.Fatal(err)
			}
			m.Release()
		}
		mustReadN(t, cl, sends)
		seen := make(map[uint64]bool)
		for range sends {
			c := s.take(t, "send", isOp(cport.OpSend))
			if c.Key != key || c.Conn != conn || c.Err != nil || c.N != 1 {
				t.Errorf("send completion %s; want key %#x, the conn, N 1", describe(&c), uint64(key))
			}
			if c.Tag < 100 || c.Tag >= 100+sends || seen[c.Tag] {
				t.Errorf("send completion tag %d: not one of 100..%d, or twice", c.Tag, 100+sends-1)
			}
			seen[c.Tag] = true
		}
		mustWrite(t, cl, []byte("ping"))
		got := 0
		for got < 4 {
			c := s.take(t, "receive", isOp(cport.OpRecv))
			if c.Key != key || c.Tag != 11 || c.Conn != conn || c.Err != nil {
				t.Errorf("receive completion %s; want key %#x tag 11", describe(&c), uint64(key))
			}
			got += c.N
			c.Release()
		}
		cl.Close()
		c := s.take(t, "receive end", isOp(cport.OpRecv))
		if c.Key != key || c.Tag != 11 || !errors.Is(c.Err, io.EOF) {
			t.Errorf("final receive completion %s; want key %#x tag 11 EOF", describe(&c), uint64(key))
		}
		c.Release()

		if err := p.Post(7, 8, 9); err != nil {
			t.Fatal(err)
		}
		c = s.take(t, "post", isOp(cport.OpPost))
		if c.Key != 7 || c.Tag != 8 || c.N != 9 || c.Err != nil || c.Conn != nil || c.Buf != nil {
			t.Errorf("post completion %s; want key 7 tag 8 n 9", describe(&c))
		}
	})
}

// TestConformanceRecvData: a receive carries the bytes in Buf[:N], N > 0
// and at most RecvBufferSize; a receive completes once then nothing more
// until Recv is called again.
func TestConformanceRecvData(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b, cport.Config{RecvBufferSize: 100})
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.Recv(5); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, []byte("hello"))
		c := s.take(t, "receive", isOp(cport.OpRecv))
		if c.Err != nil || c.Tag != 5 || c.Conn != conn || c.N <= 0 || len(c.Buf) != c.N {
			t.Fatalf("receive completion %s, len(Buf) %d; want data with tag 5, len(Buf) == N", describe(&c), len(c.Buf))
		}
		got := string(c.Buf)
		c.Release()
		// Single-shot: the rest (if the first read was short) needs Recv.
		for len(got) < 5 {
			if err := conn.Recv(6); err != nil {
				t.Fatal(err)
			}
			c := s.take(t, "receive", isOp(cport.OpRecv))
			if c.Err != nil || c.Tag != 6 {
				t.Fatalf("receive completion %s", describe(&c))
			}
			got += string(c.Buf)
			c.Release()
		}
		if got != "hello" {
			t.Fatalf("received %q; want hello", got)
		}

		// Nothing is received without a Recv.
		payload := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes: 10 receives at least
		mustWrite(t, cl, payload)
		s.none(t, "receive without Recv", isOp(cport.OpRecv))

		var all []byte
		for len(all) < len(payload) {
			if err := conn.Recv(7); err != nil {
				t.Fatal(err)
			}
			c := s.take(t, "receive", isOp(cport.OpRecv))
			if c.Err != nil || c.Tag != 7 || c.N <= 0 || len(c.Buf) != c.N {
				t.Fatalf("receive completion %s, len(Buf) %d", describe(&c), len(c.Buf))
			}
			if c.N > 100 {
				t.Errorf("receive of %d bytes with RecvBufferSize 100", c.N)
			}
			all = append(all, c.Buf...)
			c.Release()
			// One completion per Recv.
			if _, ok := s.tryTake(isOp(cport.OpRecv)); ok {
				t.Fatal("two completions for one Recv")
			}
		}
		if !bytes.Equal(all, payload) {
			t.Fatalf("received %q; want %q", all, payload)
		}
		s.none(t, "receive after the last Recv completed", isOp(cport.OpRecv))
	})
}

// TestConformanceRecvStream: RecvMulti delivers the stream in order across
// many completions and several workers: 1 MiB written in random chunks.
func TestConformanceRecvStream(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const bufSize = 4096
		p := openPort(t, b, cport.Config{RecvBufferSize: bufSize})
		var (
			mu    sync.Mutex
			got   []byte
			ended = make(chan error, 1)
			count int
			bad   []string
			out   atomic.Bool // a receive completion is out, unreleased
		)
		l := listen(t, p, 1)
		runWorkers(t, p, 4, 2, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					t.Errorf("accept: %v", c.Err)
					return
				}
				if err := c.Conn.RecvMulti(3); err != nil {
					t.Errorf("RecvMulti: %v", err)
				}
			case cport.OpRecv:
				// The conn's next completion comes after Release, whichever
				// worker gets it: never two out at once.
				if out.Swap(true) {
					mu.Lock()
					bad = append(bad, "two completions out at once: "+describe(c))
					mu.Unlock()
				}
				mu.Lock() // for the test goroutine, which reads got
				if c.Err == nil && (c.N <= 0 || c.N > bufSize || len(c.Buf) != c.N || c.Tag != 3) {
					bad = append(bad, describe(c))
				}
				got = append(got, c.Buf...)
				count++
				mu.Unlock()
				err := c.Err
				out.Store(false)
				c.Release()
				if err != nil {
					ended <- err
				}
			}
		})
		if err := l.Accept(1); err != nil {
			t.Fatal(err)
		}
		cl := dialOne(t, l.Addr())
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, 1))
		want := make([]byte, mib)
		for i := range want {
			want[i] = byte(rng.Uint32())
		}
		for off := 0; off < len(want); {
			n := min(1+rng.IntN(3*bufSize), len(want)-off)
			mustWrite(t, cl, want[off:off+n])
			off += n
		}
		cl.Close()
		select {
		case err := <-ended:
			if !errors.Is(err, io.EOF) {
				t.Errorf("receive ended with %v; want EOF", err)
			}
		case <-time.After(longWait):
			t.Fatal("the receive did not end")
		}
		mu.Lock()
		defer mu.Unlock()
		for _, d := range bad {
			t.Errorf("bad receive completion %s", d)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("received %d bytes, first difference at %d; want the %d written (seed %d)", len(got), i, len(want), seed)
		}
		if count < mib/bufSize {
			t.Errorf("%d completions for 1 MiB in %d-byte buffers", count, bufSize)
		}
	})
}

// TestConformanceRecvEOF: a graceful close by the peer ends the receive
// with io.EOF and N == 0, after the data.
func TestConformanceRecvEOF(t *testing.T) {
	for _, multi := range []bool{false, true} {
		name := "Recv"
		if multi {
			name = "RecvMulti"
		}
		t.Run(name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b string) {
				p := openPort(t, b)
				s := collect(t, p, 2)
				conn, cl := acceptOne(t, p, s)
				mustWrite(t, cl, []byte("last words"))
				cl.Close()
				var got []byte
				for i := 0; ; i++ {
					var err error
					switch {
					case !multi:
						err = conn.Recv(9)
					case i == 0:
						err = conn.RecvMulti(9)
					}
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					c := s.take(t, "receive", isOp(cport.OpRecv))
					if c.Tag != 9 || c.Conn != conn {
						t.Errorf("receive completion %s; want tag 9 and the conn", describe(&c))
					}
					got = append(got, c.Buf...)
					c.Release()
					if c.Err != nil {
						if !errors.Is(c.Err, io.EOF) || c.N != 0 || len(c.Buf) != 0 {
							t.Errorf("final receive completion %s, Buf %q; want EOF with N 0", describe(&c), c.Buf)
						}
						break
					}
					if c.N == 0 {
						t.Fatalf("receive completion without data or error: %s", describe(&c))
					}
				}
				if string(got) != "last words" {
					t.Errorf("received %q before EOF; want %q", got, "last words")
				}
				// The error completion is the receive's last.
				s.none(t, "receive after EOF", isOp(cport.OpRecv))
			})
		})
	}
}

// TestConformanceRecvReset: a reset by the peer ends the receive with an
// *OpError of Op "recv" matching syscall.ECONNRESET.
func TestConformanceRecvReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.RecvMulti(4); err != nil {
			t.Fatal(err)
		}
		reset(t, cl)
		c := s.take(t, "receive", isOp(cport.OpRecv))
		c.Release()
		if c.Err == nil || c.N != 0 || c.Tag != 4 {
			t.Fatalf("receive completion %s after a reset; want an error with N 0 and tag 4", describe(&c))
		}
		if !errors.Is(c.Err, syscall.ECONNRESET) {
			t.Errorf("receive error after a reset: %v; want one matching ECONNRESET", c.Err)
		}
		var oe *cport.OpError
		if !errors.As(c.Err, &oe) {
			t.Fatalf("receive error %v (%T) is not an *OpError", c.Err, c.Err)
		}
		if oe.Op != "recv" || oe.Backend != b {
			t.Errorf("OpError Op %q Backend %q; want recv, %s", oe.Op, oe.Backend, b)
		}
		if oe.Error() == "" || oe.Unwrap() == nil {
			t.Errorf("OpError %#v: empty message or nothing wrapped", oe)
		}
		s.none(t, "receive after the reset", isOp(cport.OpRecv))
	})
}

// TestConformanceRecvBusy: a conn has one receive in progress at most.
func TestConformanceRecvBusy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		conn, cl := acceptOne(t, p, s)
		if err := conn.Recv(1); err != nil {
			t.Fatal(err)
		}
		if err := conn.Recv(2); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Recv during Recv = %v; want ErrBusy", err)
		}
		if err := conn.RecvMulti(3); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("RecvMulti during Recv = %v; want ErrBusy", err)
		}
		mustWrite(t, cl, []byte("x"))
		c := s.take(t, "receive", isOp(cport.OpRecv))
		if c.Err != nil || c.Tag != 1 || string(c.Buf) != "x" {
			t.Fatalf("receive completion %s; want x with tag 1", describe(&c))
		}
		c.Release()
		if err := conn.RecvMulti(4); err != nil {
			t.Fatalf("RecvMulti after the Recv completed: %v", err)
		}
		if err := conn.Recv(5); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Recv during RecvMulti = %v; want ErrBusy", err)
		}
		mustWrite(t, cl, []byte("y"))
		c = s.take(t, "receive", isOp(cport.OpRecv))
		if c.Err != nil || c.Tag != 4 {
			t.Fatalf("receive completion %s; want data with tag 4", describe(&c))
		}
		// Still busy, with a completion out and after its release.
		if err := conn.RecvMulti(6); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("RecvMulti with a multishot completion out = %v; want ErrBusy", err)
		}
		c.Release()
		if err := conn.Recv(7); !errors.Is(err, cport.ErrBusy) {
			t.Errorf("Recv during RecvMulti, after a release = %v; want ErrBusy", err)
		}
	})
}

// TestConformanceRecvMultiRelease: RecvMulti delivers a conn's next
// completion only after the previous one is released.
func TestConformanceRecvMultiRelease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.RecvMulti(8); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, []byte("first"))
		held := s.take(t, "receive", isOp(cport.OpRecv))
		if held.Err != nil || held.N == 0 {
			t.Fatalf("receive completion %s", describe(&held))
		}
		got := string(held.Buf)
		// While it is held, more data arrives, and no second completion.
		mustWrite(t, cl, []byte("second"))
		s.none(t, "receive while the previous one is unreleased", isOp(cport.OpRecv))
		if string(held.Buf) != got {
			t.Fatalf("held buffer changed from %q to %q", got, held.Buf)
		}
		held.Release()
		for len(got) < len("firstsecond") {
			c := s.take(t, "receive after the release", isOp(cport.OpRecv))
			if c.Err != nil || c.Tag != 8 {
				t.Fatalf("receive completion %s", describe(&c))
			}
			got += string(c.Buf)
			c.Release()
		}
		if got != "firstsecond" {
			t.Errorf("received %q; want firstsecond", got)
		}
	})
}

// TestConformanceRecvHeld: a connection whose receive completion is held
// (not released) while its client keeps sending takes no more than a few
// of the port's receive buffers: another connection still receives, and
// once released the held one gets its whole stream, in order. (On uring a
// multishot receive went on filling the shared buffer ring for the held
// connection until every buffer was its, and the other connections
// starved.)
func TestConformanceRecvHeld(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b, cport.Config{RecvBufferSize: 256, RecvBuffers: 16})
		s := collect(t, p, 4)
		conns, clients := acceptN(t, p, s, 2)
		held, other := conns[0], conns[1]

		want := pattern(256 << 10)
		go func() {
			clients[0].Write(want)
			clients[0].CloseWrite()
		}()
		if err := held.RecvMulti(1); err != nil {
			t.Fatal(err)
		}
		first := s.take(t, "first receive of the held connection", isOpOf(cport.OpRecv, held))
		if first.Err != nil {
			t.Fatalf("first receive %s", describe(&first))
		}
		// The held connection's client goes on sending meanwhile: its
		// bytes must not take the buffers the other connection needs.
		if err := other.RecvMulti(2); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			mustWrite(t, clients[1], []byte("ping"))
			c := s.take(t, "receive of the other connection while one is held", isOpOf(cport.OpRecv, other))
			if c.Err != nil || string(c.Buf) != "ping" {
				t.Fatalf("other connection's receive %d: %s %q", i, describe(&c), c.Buf)
			}
			c.Release()
		}

		got := append([]byte(nil), first.Buf...)
		first.Release()
		for {
			c := s.take(t, "receive of the released connection", isOpOf(cport.OpRecv, held))
			got = append(got, c.Buf...)
			c.Release()
			if c.Err != nil {
				if !errors.Is(c.Err, io.EOF) {
					t.Errorf("held connection's receive ended with %v; want io.EOF", c.Err)
				}
				break
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("held connection received %d bytes, not the %d sent (first difference at %d)", len(got), len(want), firstDiff(got, want))
		}
	})
}
