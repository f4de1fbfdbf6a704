package cport_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceSend: a send completes once, with OpSend, its tag, the
// conn's key and N == the message's length, after its bytes are written.
func TestConformanceSend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		conn.SetKey(12)
		src := []byte("hello, world")
		m := cport.MsgOf(src)
		copy(src, "HELLO") // MsgOf copied it
		if m.Len() != 12 || string(m.Bytes()) != "hello, world" {
			t.Fatalf("MsgOf: Len %d Bytes %q", m.Len(), m.Bytes())
		}
		if err := conn.Send(m, 77); err != nil {
			t.Fatalf("Send: %v", err)
		}
		m.Release()
		if got := mustReadN(t, cl, 12); string(got) != "hello, world" {
			t.Errorf("client read %q", got)
		}
		c := s.take(t, "send", isOp(cport.OpSend))
		if c.Err != nil || c.Tag != 77 || c.Key != 12 || c.N != 12 || c.Conn != conn || c.Buf != nil {
			t.Errorf("send completion %s; want tag 77 key 12 N 12 and the conn", describe(&c))
		}
		c.Release() // does nothing for sends
		s.none(t, "second send completion", isOp(cport.OpSend))

		// NewMsg: the caller fills it until the first Send.
		m = cport.NewMsg(3)
		if m.Len() != 3 || len(m.Bytes()) != 3 {
			t.Fatalf("NewMsg(3): Len %d, len(Bytes) %d", m.Len(), len(m.Bytes()))
		}
		copy(m.Bytes(), "abc")
		if err := conn.Send(m, 78); err != nil {
			t.Fatal(err)
		}
		m.Release()
		if got := mustReadN(t, cl, 3); string(got) != "abc" {
			t.Errorf("client read %q; want abc", got)
		}
		c = s.take(t, "send", isOp(cport.OpSend))
		if c.Err != nil || c.Tag != 78 || c.N != 3 {
			t.Errorf("send completion %s; want tag 78 N 3", describe(&c))
		}
	})
}

// TestConformanceSendEmpty: an empty message completes like any other.
func TestConformanceSendEmpty(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		conn, cl := acceptOne(t, p, s)
		for i, n := range []int{0, 1, 0} {
			m := cport.NewMsg(n)
			if n > 0 {
				m.Bytes()[0] = 'z'
			}
			if err := conn.Send(m, uint64(i)); err != nil {
				t.Fatal(err)
			}
			m.Release()
		}
		for range 3 {
			c := s.take(t, "send", isOp(cport.OpSend))
			if c.Err != nil || c.N != map[uint64]int{0: 0, 1: 1, 2: 0}[c.Tag] {
				t.Errorf("send completion %s", describe(&c))
			}
		}
		if got := mustReadN(t, cl, 1); string(got) != "z" {
			t.Errorf("client read %q; want z", got)
		}
	})
}

// message returns the i-th message of the ordering tests: 4 to 32 bytes,
// its index first.
func message(buf []byte, i int) []byte {
	n := 4 + i%29
	b := buf[:n]
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < n; j++ {
		b[j] = byte(i + j)
	}
	return b
}

// TestConformanceSendOrder: many sends queued quickly on one conn arrive in
// order and whole, and each completes exactly once.
func TestConformanceSendOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		count := 100_000
		if testing.Short() {
			count = 10_000
		}
		p := openPort(t, b)
		var (
			accepted = make(chan *cport.Conn, 1)
			done     atomic.Int64
			seen     = make([]atomic.Int32, count)
		)
		errorf := limitErrors(t)
		runWorkers(t, p, 2, 64, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				accepted <- c.Conn
			case cport.OpSend:
				if c.Err != nil || c.Tag >= uint64(count) {
					errorf("send completion %s", describe(c))
					return
				}
				var buf [32]byte
				if want := len(message(buf[:], int(c.Tag))); c.N != want {
					errorf("send completion %s; want N %d", describe(c), want)
				}
				if seen[c.Tag].Add(1) != 1 {
					errorf("send %d completed twice", c.Tag)
				}
				done.Add(1)
			default:
				errorf("unexpected completion %s", describe(c))
			}
		})
		l := listen(t, p, 1)
		if err := l.Accept(0); err != nil {
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

		// The client checks the stream as it comes.
		verified := make(chan error, 1)
		go func() {
			cl.SetReadDeadline(time.Now().Add(2 * longWait))
			r := bufio.NewReaderSize(cl, 64<<10)
			var want, got [32]byte
			for i := range count {
				w := message(want[:], i)
				if _, err := io.ReadFull(r, got[:len(w)]); err != nil {
					verified <- err
					return
				}
				if !bytes.Equal(got[:len(w)], w) {
					verified <- fmt.Errorf("message %d corrupt or out of order", i)
					return
				}
			}
			verified <- nil
		}()

		var buf [32]byte
		for i := range count {
			m := cport.MsgOf(message(buf[:], i))
			if err := conn.Send(m, uint64(i)); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			m.Release()
		}
		select {
		case err := <-verified:
			if err != nil {
				t.Fatalf("client: %v", err)
			}
		case <-time.After(2 * longWait):
			t.Fatal("client did not get the stream")
		}
		eventually(t, "every send to complete", func() bool { return done.Load() == int64(count) })
		if q := conn.Queued(); q != 0 {
			t.Errorf("Queued() = %d after every send completed", q)
		}
	})
}

// pattern returns n bytes that differ from one offset to the next.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	return b
}

// TestConformanceSendLarge: an 8 MiB message to a client that does not
// read is not complete; read slowly, it arrives whole and then completes.
func TestConformanceSendLarge(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const size = 8 * mib
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		cl.SetReadBuffer(16 << 10) // keep the bytes in flight few
		want := pattern(size)
		m := cport.MsgOf(want)
		if err := conn.Send(m, 5); err != nil {
			t.Fatal(err)
		}
		m.Release()
		// Absence check: the client reads nothing, so the message cannot all
		// be written, and no completion may come.
		s.none(t, "send of 8 MiB to a client that reads nothing", isOp(cport.OpSend))
		if q := conn.Queued(); q != size {
			t.Errorf("Queued() = %d while the message is not all written; want %d", q, size)
		}
		if w := conn.Written(); w < 0 || w >= size {
			t.Errorf("Written() = %d while the client reads nothing; want less than %d", w, size)
		}
		// Read slowly, in small pieces with pauses (the pauses are the
		// slowness under test, not synchronisation).
		got := make([]byte, 0, size)
		buf := make([]byte, 64<<10)
		cl.SetReadDeadline(time.Now().Add(longWait))
		for i := 0; len(got) < size; i++ {
			n, err := cl.Read(buf)
			if err != nil {
				t.Fatalf("client read after %d bytes: %v", len(got), err)
			}
			got = append(got, buf[:n]...)
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatal("client got the 8 MiB corrupted")
		}
		c := s.take(t, "send", isOp(cport.OpSend))
		if c.Err != nil || c.N != size || c.Tag != 5 {
			t.Errorf("send completion %s; want N %d tag 5", describe(&c), size)
		}
		if q := conn.Queued(); q != 0 {
			t.Errorf("Queued() = %d after the send completed", q)
		}
		if w := conn.Written(); w != size {
			t.Errorf("Written() = %d after the send completed; want %d", w, size)
		}
	})
}

// TestConformanceSendQueued: Queued grows while the client does not read,
// and returns to 0 once it has read everything.
func TestConformanceSendQueued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const (
			size  = mib + 1 // not pooled
			sends = 32
		)
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		cl.SetReadBuffer(16 << 10)
		if q := conn.Queued(); q != 0 {
			t.Fatalf("Queued() = %d before any send", q)
		}
		m := cport.MsgOf(pattern(size))
		var first int
		for i := range sends {
			if err := conn.Send(m, uint64(i)); err != nil {
				t.Fatal(err)
			}
			q := conn.Queued()
			if q < 0 || q > (i+1)*size {
				t.Fatalf("Queued() = %d after %d sends of %d bytes", q, i+1, size)
			}
			if i == 0 {
				first = q
			}
		}
		m.Release()
		// 32 MiB cannot all be in the kernel's buffers of a client that
		// does not read: Queued has grown past a message, and stays there
		// (absence check: it does not drop to 0 within grace).
		if q := conn.Queued(); q <= size || q <= first {
			t.Fatalf("Queued() = %d after queuing 32 MiB to a client that reads nothing (%d after the first send); want more than a message", q, first)
		}
		time.Sleep(grace)
		if q := conn.Queued(); q <= size {
			t.Fatalf("Queued() = %d, %v after queuing 32 MiB to a client that reads nothing", q, grace)
		}
		// The client reads it all.
		var total atomic.Int64
		readDone := make(chan error, 1)
		go func() {
			cl.SetReadDeadline(time.Now().Add(longWait))
			n, err := io.CopyN(io.Discard, cl, sends*size)
			total.Store(n)
			readDone <- err
		}()
		if err := <-readDone; err != nil {
			t.Fatalf("client read %d bytes: %v", total.Load(), err)
		}
		for range sends {
			c := s.take(t, "send", isOp(cport.OpSend))
			if c.Err != nil || c.N != size {
				t.Errorf("send completion %s", describe(&c))
			}
		}
		if q := conn.Queued(); q != 0 {
			t.Errorf("Queued() = %d after the client read everything", q)
		}
	})
}

// TestConformanceSendQuiet: SendQuiet posts no completion on success.
func TestConformanceSendQuiet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		for _, w := range []string{"quiet ", "as ", "a ", "mouse "} {
			m := cport.MsgOf([]byte(w))
			if err := conn.SendQuiet(m); err != nil {
				t.Fatalf("SendQuiet: %v", err)
			}
			m.Release()
		}
		m := cport.MsgOf([]byte("loud"))
		if err := conn.Send(m, 99); err != nil {
			t.Fatal(err)
		}
		m.Release()
		const want = "quiet as a mouse loud"
		if got := mustReadN(t, cl, len(want)); string(got) != want {
			t.Errorf("client read %q; want %q", got, want)
		}
		c := s.take(t, "send", isOp(cport.OpSend))
		if c.Tag != 99 || c.N != 4 || c.Err != nil {
			t.Errorf("send completion %s; want only the tagged one, N 4", describe(&c))
		}
		s.none(t, "send completion of SendQuiet", isOp(cport.OpSend))
		if q := conn.Queued(); q != 0 {
			t.Errorf("Queued() = %d after everything was written", q)
		}
	})
}

// TestConformanceMsgRefs: one Msg sent to several conns is released by the
// sends when they are done; the caller's last Release does not panic, and a
// Release too many does.
func TestConformanceMsgRefs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const n = 4
		p := openPort(t, b)
		s := collect(t, p, 2)
		l := listen(t, p, 1)
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		clients := dial(t, l.Addr(), n)
		var conns []*cport.Conn
		for range n {
			c := s.take(t, "accept", isOp(cport.OpAccept))
			if c.Err != nil {
				t.Fatal(c.Err)
			}
			t.Cleanup(func() { c.Conn.Close() })
			conns = append(conns, c.Conn)
		}
		// Larger than the pooled sizes: the Msg is this test's alone, so
		// the extra Release below cannot hit another test's message.
		want := pattern(mib + 7)
		m := cport.MsgOf(want)
		m.Ref() // a second reference of the caller's
		for i, c := range conns {
			if err := c.Send(m, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		m.Release() // the Ref
		var wg sync.WaitGroup
		for _, cl := range clients {
			wg.Go(func() {
				got, err := readN(cl, len(want))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("client got %d bytes (%v); want the message", len(got), err)
				}
			})
		}
		wg.Wait()
		for range n {
			c := s.take(t, "send", isOp(cport.OpSend))
			if c.Err != nil || c.N != len(want) {
				t.Errorf("send completion %s", describe(&c))
			}
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("the last Release after the sends completed panicked: %v", r)
				}
			}()
			m.Release()
		}()
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Error("a Release more than the references did not panic")
				}
			}()
			m.Release()
		}()
	})
}

// isSendFailure reports whether err is what a send to a reset peer fails
// with.
func isSendFailure(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// resetConns is how many connections the reset tests break at once: the
// outcome of a reset racing with a write in flight varies from one
// connection to the next, and every one must meet the contract.
func resetConns() int {
	if testing.Short() {
		return 8
	}
	return 64
}

// TestConformanceSendReset: the peer resets while a large send is in
// flight: the send completes with ECONNRESET or EPIPE, the pending receive
// with an error (not io.EOF: the peer did not close gracefully); later sends
// fail at once and post nothing.
func TestConformanceSendReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const size = 4 * mib
		n := resetConns()
		p := openPort(t, b)
		s := collect(t, p, 2)
		conns, clients := acceptN(t, p, s, n)
		m := cport.NewMsg(size)
		defer m.Release()
		for i, conn := range conns {
			clients[i].SetReadBuffer(16 << 10)
			conn.SetKey(uint64(i))
			if err := conn.RecvMulti(1); err != nil {
				t.Fatal(err)
			}
			if err := conn.Send(m, 2); err != nil {
				t.Fatal(err)
			}
		}
		// Once the client has bytes to read, the write is under way: the
		// reset hits a send in flight.
		for _, cl := range clients {
			if _, err := readN(cl, 1); err != nil {
				t.Fatalf("client read: %v", err)
			}
			reset(t, cl)
		}
		for i, conn := range conns {
			c := s.take(t, "send", isOpOf(cport.OpSend, conn))
			if c.Err == nil || c.Tag != 2 || c.Key != uint64(i) {
				t.Fatalf("conn %d: send completion %s after the peer reset; want an error, tag 2", i, describe(&c))
			}
			if !isSendFailure(c.Err) {
				t.Errorf("conn %d: send error %v; want ECONNRESET or EPIPE", i, c.Err)
			}
			var oe *cport.OpError
			if !errors.As(c.Err, &oe) || oe.Op != "send" || oe.Backend != b {
				t.Errorf("conn %d: send error %v (%T); want an *OpError with Op send and Backend %s", i, c.Err, c.Err, b)
			}
			r := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
			r.Release()
			if r.Err == nil || r.N != 0 || r.Tag != 1 {
				t.Fatalf("conn %d: receive completion %s after the reset; want an error", i, describe(&r))
			}
			if !isSendFailure(r.Err) {
				t.Errorf("conn %d: receive error %v after a reset during a send; want the reset (ECONNRESET) or the send's failure", i, r.Err)
			}
			if q := conn.Queued(); q != 0 {
				t.Errorf("conn %d: Queued() = %d after the send failed", i, q)
			}
			if err := conn.Send(m, 3); err == nil {
				t.Errorf("conn %d: Send on a broken conn succeeded", i)
			}
			if err := conn.SendQuiet(m); err == nil {
				t.Errorf("conn %d: SendQuiet on a broken conn succeeded", i)
			}
		}
		s.none(t, "send completion of a Send that failed at once", isOp(cport.OpSend))
		s.none(t, "receive completion after the receive ended", isOp(cport.OpRecv))
	})
}

// TestConformanceSendQuietReset: SendQuiet to a peer that resets posts no
// send completion; the receive completes with the error (not io.EOF), and
// later sends fail at once.
func TestConformanceSendQuietReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const size = 4 * mib
		n := resetConns()
		p := openPort(t, b)
		s := collect(t, p, 2)
		conns, clients := acceptN(t, p, s, n)
		m := cport.NewMsg(size)
		for i, conn := range conns {
			clients[i].SetReadBuffer(16 << 10)
			if err := conn.RecvMulti(1); err != nil {
				t.Fatal(err)
			}
			if err := conn.SendQuiet(m); err != nil {
				t.Fatal(err)
			}
		}
		m.Release()
		for _, cl := range clients {
			if _, err := readN(cl, 1); err != nil {
				t.Fatalf("client read: %v", err)
			}
			reset(t, cl)
		}
		for i, conn := range conns {
			r := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
			r.Release()
			if r.Err == nil || r.Tag != 1 {
				t.Fatalf("conn %d: receive completion %s after the reset; want an error", i, describe(&r))
			}
			if !isSendFailure(r.Err) {
				t.Errorf("conn %d: receive error %v after a reset during a quiet send; want the reset (ECONNRESET) or the send's failure", i, r.Err)
			}
			// The failed write frees its message; then sends fail at once.
			eventually(t, "Queued() to drop to 0 once the write failed", func() bool { return conn.Queued() == 0 })
			eventually(t, "Send to fail at once on the broken conn", func() bool {
				m := cport.MsgOf([]byte("x"))
				defer m.Release()
				return conn.SendQuiet(m) != nil
			})
			x := cport.MsgOf([]byte("x"))
			if err := conn.Send(x, 5); err == nil {
				t.Errorf("conn %d: Send on a broken conn succeeded", i)
			}
			x.Release()
		}
		s.none(t, "send completion for SendQuiet or a failed Send", isOp(cport.OpSend))
	})
}

// TestConformanceConnAbort: Abort completes the pending receive and the
// queued sends that were not written with ErrCanceled; those written before
// complete normally. Later calls fail with net.ErrClosed; Close after it is
// fine.
func TestConformanceConnAbort(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const (
			size  = mib
			sends = 64
		)
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		cl.SetReadBuffer(16 << 10)
		if err := conn.RecvMulti(1000); err != nil {
			t.Fatal(err)
		}
		m := cport.NewMsg(size)
		for i := range sends {
			if err := conn.Send(m, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		m.Release()
		q := cport.MsgOf([]byte("q"))
		if err := conn.SendQuiet(q); err != nil {
			t.Fatal(err)
		}
		q.Release()
		// The client takes a little, so that the writing is under way.
		if _, err := readN(cl, 1000); err != nil {
			t.Fatal(err)
		}
		if err := conn.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		r := s.take(t, "receive", isOp(cport.OpRecv))
		r.Release()
		if !errors.Is(r.Err, cport.ErrCanceled) || r.Tag != 1000 || r.N != 0 {
			t.Errorf("pending receive after Abort: %s; want ErrCanceled, tag 1000", describe(&r))
		}
		// Every tagged send completes once: a prefix written, the rest
		// canceled.
		errs := make([]error, sends)
		for range sends {
			c := s.take(t, "send", isOp(cport.OpSend))
			if c.Tag >= sends || errs[c.Tag] != nil {
				t.Fatalf("send completion %s: unknown tag or twice", describe(&c))
			}
			if c.N != size {
				t.Errorf("send completion %s; want N %d", describe(&c), size)
			}
			errs[c.Tag] = c.Err
			if c.Err == nil {
				errs[c.Tag] = errWritten
			}
		}
		canceled := 0
		for i, err := range errs {
			switch {
			case errors.Is(err, cport.ErrCanceled):
				canceled++
			case err == errWritten:
				if canceled > 0 {
					t.Errorf("send %d completed after send %d was canceled", i, i-1)
				}
			default:
				t.Errorf("send %d completed with %v; want success or ErrCanceled", i, err)
			}
		}
		if canceled == 0 {
			t.Error("no send canceled, though 64 MiB cannot have been written")
		}
		s.none(t, "completion after the sends and the receive", func(*cport.Completion) bool { return true })

		x := cport.MsgOf([]byte("x"))
		if err := conn.Send(x, 1); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Send after Close = %v; want net.ErrClosed", err)
		}
		if err := conn.SendQuiet(x); !errors.Is(err, net.ErrClosed) {
			t.Errorf("SendQuiet after Close = %v; want net.ErrClosed", err)
		}
		x.Release()
		if err := conn.Recv(1); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Recv after Close = %v; want net.ErrClosed", err)
		}
		if err := conn.RecvMulti(1); !errors.Is(err, net.ErrClosed) {
			t.Errorf("RecvMulti after Close = %v; want net.ErrClosed", err)
		}
		if err := conn.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if q := conn.Queued(); q != 0 {
			t.Errorf("Queued() = %d after Close", q)
		}
		if n := p.Conns(); n != 0 {
			t.Errorf("Port.Conns() = %d after closing the only conn", n)
		}
	})
}

var errWritten = errors.New("written")

// TestConformanceConnCloseIdle: closing a conn with nothing in progress
// posts nothing; Close from several goroutines at once is fine.
func TestConformanceConnCloseIdle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if err := conn.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
		wg.Wait()
		s.none(t, "completion of an idle conn's Close", func(*cport.Completion) bool { return true })
		cl.SetReadDeadline(time.Now().Add(longWait))
		if n, err := cl.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("client read %d, %v from a closed conn; want the end of the stream", n, err)
		}
	})
}

// TestConformanceSendConcurrent: Sends from several goroutines on one conn
// each arrive whole, and each goroutine's in its order.
func TestConformanceSendConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const senders = 4
		perSender := 5000
		if testing.Short() {
			perSender = 1000
		}
		p := openPort(t, b)
		var done atomic.Int64
		accepted := make(chan *cport.Conn, 1)
		errorf := limitErrors(t)
		runWorkers(t, p, 2, 16, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				accepted <- c.Conn
			case cport.OpSend:
				if c.Err != nil {
					errorf("send completion %s", describe(c))
				}
				done.Add(1)
			}
		})
		l := listen(t, p, 1)
		if err := l.Accept(0); err != nil {
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
		// Message: sender, seq, length byte, then length bytes of filler.
		msg := func(g, seq int) []byte {
			n := 1 + (g*31+seq)%40
			m := make([]byte, 9+n)
			binary.BigEndian.PutUint32(m[0:], uint32(g))
			binary.BigEndian.PutUint32(m[4:], uint32(seq))
			m[8] = byte(n)
			for i := range n {
				m[9+i] = byte(g + seq + i)
			}
			return m
		}
		verified := make(chan error, 1)
		go func() {
			cl.SetReadDeadline(time.Now().Add(2 * longWait))
			r := bufio.NewReader(cl)
			next := make([]int, senders)
			hdr := make([]byte, 9)
			for range senders * perSender {
				if _, err := io.ReadFull(r, hdr); err != nil {
					verified <- err
					return
				}
				g, seq := int(binary.BigEndian.Uint32(hdr[0:])), int(binary.BigEndian.Uint32(hdr[4:]))
				if g >= senders || seq != next[g] {
					verified <- fmt.Errorf("got message %d of sender %d; want %d", seq, g, next[min(g, senders-1)])
					return
				}
				want := msg(g, seq)
				body := make([]byte, int(hdr[8]))
				if _, err := io.ReadFull(r, body); err != nil {
					verified <- err
					return
				}
				if !bytes.Equal(append(hdr, body...), want) {
					verified <- fmt.Errorf("message %d of sender %d corrupt", seq, g)
					return
				}
				next[g]++
			}
			verified <- nil
		}()
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				for seq := range perSender {
					m := cport.MsgOf(msg(g, seq))
					if err := conn.Send(m, uint64(g)); err != nil {
						t.Errorf("Send: %v", err)
						return
					}
					m.Release()
				}
			})
		}
		wg.Wait()
		select {
		case err := <-verified:
			if err != nil {
				t.Fatalf("client: %v", err)
			}
		case <-time.After(2 * longWait):
			t.Fatal("the client did not get every message")
		}
		eventually(t, "every send to complete", func() bool { return done.Load() == senders*int64(perSender) })
	})
}

// TestConformanceConnCloseHeld: closing a conn whose multishot receive has
// a completion out: nothing more comes until the release, then the
// receive ends with ErrCanceled (no data after the Close).
func TestConformanceConnCloseHeld(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.RecvMulti(3); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, []byte("first"))
		held := s.take(t, "receive", isOp(cport.OpRecv))
		if held.Err != nil {
			t.Fatal(held.Err)
		}
		mustWrite(t, cl, []byte("more"))
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		s.none(t, "receive while a completion is out", isOp(cport.OpRecv))
		held.Release()
		c := s.take(t, "receive end", isOp(cport.OpRecv))
		c.Release()
		if !errors.Is(c.Err, cport.ErrCanceled) || c.N != 0 || c.Tag != 3 {
			t.Errorf("receive completion after Close and release: %s; want ErrCanceled", describe(&c))
		}
		s.none(t, "receive after ErrCanceled", isOp(cport.OpRecv))
	})
}

// TestConformanceSendAfterPeerEOF: a peer that shuts down its writing half
// ends the receive with io.EOF; sends go on and arrive.
func TestConformanceSendAfterPeerEOF(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		mustWrite(t, cl, []byte("question"))
		if err := cl.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := recvAll(t, s, conn, 1)
		if string(got) != "question" || !errors.Is(err, io.EOF) {
			t.Fatalf("received %q, %v; want question, then EOF", got, err)
		}
		m := cport.MsgOf([]byte("answer"))
		if err := conn.Send(m, 2); err != nil {
			t.Fatalf("Send after the peer's EOF: %v", err)
		}
		m.Release()
		if got := mustReadN(t, cl, 6); string(got) != "answer" {
			t.Errorf("client read %q; want answer", got)
		}
		c := s.take(t, "send", isOp(cport.OpSend))
		if c.Err != nil || c.N != 6 || c.Tag != 2 {
			t.Errorf("send completion %s", describe(&c))
		}
		conn.Close()
		cl.SetReadDeadline(time.Now().Add(longWait))
		if n, err := cl.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("client read %d, %v after Close; want EOF", n, err)
		}
	})
}

// TestConformanceSendCloseRace: Sends from several goroutines race with
// Close: a Send that returned nil completes exactly once (written, or
// ErrCanceled); one that returned an error posts nothing.
func TestConformanceSendCloseRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const (
			senders   = 4
			perSender = 5000 // at most
		)
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		go io.Copy(io.Discard, cl) // ends when the cleanup closes cl
		var (
			accepted [senders]atomic.Int64 // Sends that returned nil, per sender
			wg       sync.WaitGroup
			started  = make(chan struct{}, senders)
		)
		for g := range senders {
			wg.Go(func() {
				m := cport.MsgOf(make([]byte, 100+g*1000))
				defer m.Release()
				for i := range uint64(perSender) {
					if i == 100 {
						started <- struct{}{}
					}
					if err := conn.Send(m, uint64(g)<<32|i); err != nil {
						if !errors.Is(err, net.ErrClosed) {
							t.Errorf("Send racing with Close: %v; want net.ErrClosed", err)
						}
						return
					}
					accepted[g].Add(1)
				}
			})
		}
		for range senders {
			<-started
		}
		conn.Close()
		wg.Wait()
		var want int64
		seen := make(map[uint64]bool)
		for g := range senders {
			want += accepted[g].Load()
		}
		deadline := time.Now().Add(longWait)
		for int64(len(seen)) < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d send completions of %d Sends accepted", len(seen), want)
			}
			for _, c := range s.takeAll(isOp(cport.OpSend)) {
				g, i := c.Tag>>32, int64(c.Tag&(1<<32-1))
				if g >= senders || i >= accepted[g].Load() || seen[c.Tag] {
					t.Fatalf("send completion %s: of a Send that failed, or twice", describe(&c))
				}
				seen[c.Tag] = true
				if c.Err != nil && !errors.Is(c.Err, cport.ErrCanceled) {
					t.Errorf("send completion %s; want success or ErrCanceled", describe(&c))
				}
			}
			time.Sleep(time.Millisecond)
		}
		s.none(t, "send completion beyond the Sends accepted", isOp(cport.OpSend))
	})
}

// TestConformanceSendWhileWorkerRuns: a Send from a goroutine that is not a
// worker goes out although a worker is running and does not come back to
// Wait: the write may not wait for an unrelated worker (which may run for
// long, or block). A running worker's own Sends may wait for its next Wait.
func TestConformanceSendWhileWorkerRuns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		l := listen(t, p, 1)
		w := p.Worker()
		defer w.Close()
		if err := l.Accept(0); err != nil {
			t.Fatal(err)
		}
		cl := dialOne(t, l.Addr())
		a, err := w.WaitOne(longWait)
		if err != nil || a.Op != cport.OpAccept || a.Err != nil {
			t.Fatalf("accept: %s, %v", describe(&a), err)
		}
		conn := a.Conn
		t.Cleanup(func() { conn.Close() })
		// w takes a post and runs: it does not Wait again until the client
		// has the bytes.
		if err := p.Post(0, 0, 0); err != nil {
			t.Fatal(err)
		}
		if c, err := w.WaitOne(longWait); err != nil || c.Op != cport.OpPost {
			t.Fatalf("WaitOne: %s, %v", describe(&c), err)
		}
		msg := []byte("sent from another goroutine")
		errc := make(chan error, 1)
		go func() {
			m := cport.MsgOf(msg)
			defer m.Release()
			errc <- conn.Send(m, 1)
		}()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if got, err := readN(cl, len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("client read %q, %v; want %q, sent by a goroutine that is no worker while a worker runs", got, err, msg)
		}
		c, err := w.WaitOne(longWait)
		if err != nil || c.Op != cport.OpSend || c.Tag != 1 || c.Err != nil {
			t.Fatalf("WaitOne: %s, %v; want the send's completion", describe(&c), err)
		}
		// Now w runs again, and sends itself: out by its next Wait at the
		// latest, which gets the send's completion.
		msg = []byte("sent from the running worker")
		m := cport.MsgOf(msg)
		if err := conn.Send(m, 2); err != nil {
			t.Fatal(err)
		}
		m.Release()
		c, err = w.WaitOne(longWait)
		if err != nil || c.Op != cport.OpSend || c.Tag != 2 || c.Err != nil {
			t.Fatalf("WaitOne: %s, %v; want the send's completion", describe(&c), err)
		}
		if got, err := readN(cl, len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("client read %q, %v; want %q", got, err, msg)
		}
	})
}
