package cport_test

// Per-operation deadlines of a connection (Conn.SetReadDeadline,
// SetWriteDeadline), on every engine: what does not complete in time
// fails with an error matching os.ErrDeadlineExceeded, and the connection
// stays usable, nothing it received lost.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"cport.dev/cport"
)

// isDeadline reports whether err is an *OpError of op that matches
// os.ErrDeadlineExceeded.
func isDeadline(err error, op string) bool {
	var oe *cport.OpError
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &oe) && oe.Op == op
}

// TestConformanceReadDeadline: a receive pending when the read deadline
// passes completes with an *OpError matching os.ErrDeadlineExceeded;
// receives then fail at once until the deadline is cleared; the bytes the
// peer sends meanwhile are kept, and the next receives deliver them whole
// and in order, then the end of stream.
func TestConformanceReadDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.Recv(5); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
		if !isDeadline(c.Err, "recv") || c.Tag != 5 || c.N != 0 {
			t.Fatalf("receive at the deadline: %s; want an *OpError of recv matching os.ErrDeadlineExceeded", describe(&c))
		}
		if err := conn.Recv(6); !isDeadline(err, "recv") {
			t.Fatalf("Recv after the deadline = %v; want os.ErrDeadlineExceeded at once", err)
		}
		// The peer sends after the deadline: the engine may read it
		// already, but nobody receives it yet.
		want := pattern(200000)
		mustWrite(t, cl, want)
		s.none(t, "receive while the deadline has passed", isOpOf(cport.OpRecv, conn))
		if err := conn.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		cl.CloseWrite()
		got, err := recvAll(t, s, conn, 7)
		if !bytes.Equal(got, want) {
			t.Fatalf("received %d bytes after the deadline was cleared, differing at %d; want the %d sent", len(got), firstDiff(got, want), len(want))
		}
		if err != io.EOF {
			t.Fatalf("the receive ended with %v; want io.EOF", err)
		}
	})
}

// TestConformanceReadDeadlineMulti: a multishot receive whose completion
// is out when the deadline passes ends with os.ErrDeadlineExceeded after
// its release, once what it received before is delivered; what the peer
// sends later comes with the next receive, the stream whole.
func TestConformanceReadDeadlineMulti(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		want := pattern(300000)
		if err := conn.RecvMulti(3); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, want[:1000])
		first := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
		if first.Err != nil {
			t.Fatal(first.Err)
		}
		got := append([]byte(nil), first.Buf...)
		// Held: more arrives behind it, then the deadline passes.
		mustWrite(t, cl, want[1000:100000])
		if err := conn.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, cl, want[100000:200000])
		first.Release()
		for {
			c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
			got = append(got, c.Buf...)
			c.Release()
			if c.Err != nil {
				if !isDeadline(c.Err, "recv") {
					t.Fatalf("the multishot receive ended with %v; want os.ErrDeadlineExceeded", c.Err)
				}
				break
			}
		}
		if err := conn.RecvMulti(4); !isDeadline(err, "recv") {
			t.Fatalf("RecvMulti after the deadline = %v; want os.ErrDeadlineExceeded at once", err)
		}
		mustWrite(t, cl, want[200000:])
		cl.CloseWrite()
		if err := conn.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		rest, err := recvAll(t, s, conn, 4)
		got = append(got, rest...)
		if !bytes.Equal(got, want) || err != io.EOF {
			t.Fatalf("received %d bytes, differing at %d, then %v; want the %d sent, then io.EOF", len(got), firstDiff(got, want), err, len(want))
		}
	})
}

// TestConformanceReadDeadlineMove: a deadline in the past fails the
// pending receive at once; one moved later, or cleared, before it passes
// fails nothing; one moved earlier passes at its new time.
func TestConformanceReadDeadlineMove(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		// Moved later, then cleared: nothing fails.
		if err := conn.Recv(1); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(2 * grace)); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		s.none(t, "receive of a deadline moved later", isOpOf(cport.OpRecv, conn))
		if err := conn.SetReadDeadline(time.Now().Add(2 * grace)); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * grace) // absence check: past the cleared deadline
		s.none(t, "receive of a cleared deadline", isOpOf(cport.OpRecv, conn))
		// Moved from an hour to now: the receive fails.
		if err := conn.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if c := s.take(t, "receive", isOpOf(cport.OpRecv, conn)); !isDeadline(c.Err, "recv") {
			t.Fatalf("receive at a deadline moved earlier: %s; want os.ErrDeadlineExceeded", describe(&c))
		}
		// In the past: a pending receive fails at once.
		conn.SetReadDeadline(time.Time{})
		if err := conn.Recv(2); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if c := s.take(t, "receive", isOpOf(cport.OpRecv, conn)); !isDeadline(c.Err, "recv") || c.Tag != 2 {
			t.Fatalf("receive at a deadline set in the past: %s; want os.ErrDeadlineExceeded", describe(&c))
		}
		// Cleared: receives work again.
		conn.SetReadDeadline(time.Time{})
		mustWrite(t, cl, []byte("after"))
		if got := recvCport(t, s, conn, 5); string(got) != "after" {
			t.Fatalf("received %q; want %q", got, "after")
		}
		conn.Close()
		if err := conn.SetReadDeadline(time.Now()); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("SetReadDeadline on a closed Conn = %v; want ErrClosed", err)
		}
	})
}

// TestConformanceWriteDeadline: a peer that does not read (64 MiB sent,
// more than the socket buffers of both ends hold: a receive buffer made
// small after the connect would leave the window shut for long, TCP's
// zero-window probes backing off); at the write
// deadline, the messages queued and not taken by a write fail with
// os.ErrDeadlineExceeded, and Send fails at once; the write in flight is
// not recalled. Once the deadline is cleared and the peer reads, every
// message that did not fail arrives whole, then what is sent after, and
// the connection closes.
func TestConformanceWriteDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		const big = 16 << 20
		bigMsg := cport.MsgOf(bytes.Repeat([]byte{'B'}, big))
		defer bigMsg.Release()
		small := []byte("0123456789abcdef")
		smallMsg := cport.MsgOf(small)
		defer smallMsg.Release()
		sent := 0
		// More than the socket buffers of both ends hold.
		for range 4 {
			if err := conn.Send(bigMsg, 1); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		// The deadline is set once the writes have stalled: while the
		// socket buffers still grow, an engine that writes in several
		// batches (epoll) may take into its last one every small message
		// queued before the deadline, and none is left to fail (seen once
		// on a loaded machine).
		for last, still := conn.Written(), time.Now(); time.Since(still) < 200*time.Millisecond; {
			time.Sleep(10 * time.Millisecond)
			if w := conn.Written(); w != last {
				last, still = w, time.Now()
			}
		}
		if err := conn.SetWriteDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		// Small messages queued until the deadline (paced: a message a
		// millisecond): those after the write in flight fail.
		for {
			err := conn.Send(smallMsg, 2)
			if err != nil {
				if !isDeadline(err, "send") {
					t.Fatalf("Send = %v; want os.ErrDeadlineExceeded once the deadline passed", err)
				}
				break
			}
			sent++
			time.Sleep(time.Millisecond)
		}
		failed := s.take(t, "send failed at the deadline", func(c *cport.Completion) bool {
			return c.Op == cport.OpSend && c.Err != nil
		})
		if !isDeadline(failed.Err, "send") {
			t.Fatalf("send at the deadline: %s; want os.ErrDeadlineExceeded", describe(&failed))
		}
		// Cleared: the peer reads everything, the sends go on.
		if err := conn.SetWriteDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		read := make(chan []byte, 1)
		go func() {
			cl.SetReadDeadline(time.Now().Add(longWait))
			b, _ := io.ReadAll(cl)
			read <- b
		}()
		okBytes, done := 0, 1
		for ; done < sent; done++ {
			c := s.take(t, "send", isOpOf(cport.OpSend, conn))
			switch {
			case c.Err == nil:
				okBytes += c.N
			case !isDeadline(c.Err, "send"):
				t.Fatalf("send completion %s; want success, or a failure at the deadline", describe(&c))
			}
		}
		tail := []byte("the end")
		sendCport(t, s, conn, tail)
		conn.Close()
		var got []byte
		select {
		case got = <-read:
		case <-time.After(longWait):
			t.Fatalf("waited %v for the peer to read", longWait)
		}
		if len(got) != okBytes+len(tail) || !bytes.HasSuffix(got, tail) {
			t.Fatalf("the peer read %d bytes; want %d, the messages written whole, then %q", len(got), okBytes+len(tail), tail)
		}
	})
}

// TestConformanceWriteDeadlineClose: a connection whose write deadline
// failed its queue, the write in flight stuck on a peer that does not
// read, still closes: Abort ends the write in flight (with ErrCanceled),
// and the queue empties.
func TestConformanceWriteDeadlineClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, _ := acceptOne(t, p, s)
		m := cport.MsgOf(bytes.Repeat([]byte{'x'}, 16<<20))
		defer m.Release()
		for range 4 {
			if err := conn.Send(m, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := conn.SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Send to fail at the deadline", func() bool {
			err := conn.Send(m, 2)
			if err == nil {
				return false
			}
			if !isDeadline(err, "send") {
				t.Fatalf("Send = %v; want os.ErrDeadlineExceeded", err)
			}
			return true
		})
		conn.Abort()
		eventually(t, "the queue to end", func() bool { return conn.Queued() == 0 })
		for _, c := range s.takeAll(isOpOf(cport.OpSend, conn)) {
			if c.Err != nil && !isDeadline(c.Err, "send") && !errors.Is(c.Err, cport.ErrCanceled) {
				t.Errorf("send completion %s; want success, the deadline or ErrCanceled", describe(&c))
			}
		}
	})
}
