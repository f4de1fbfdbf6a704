package cport_test

// Closing gracefully: Close writes what is queued, CloseWrite half-closes,
// Abort resets. The bug this began with: an echo server that closes on its
// client's end of stream lost the echo still queued.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceCloseGraceful: Close with messages queued ends the
// receive at once, writes every message, then ends the stream: the client
// reads them all and an end of stream, and every send completes.
func TestConformanceCloseGraceful(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const size, sends = 256 << 10, 16
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		if err := conn.RecvMulti(7); err != nil {
			t.Fatal(err)
		}
		m := cport.NewMsg(size)
		for i := range m.Bytes() {
			m.Bytes()[i] = byte(i % 251)
		}
		for i := range sends {
			if err := conn.Send(m, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		m.Release()
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		r := s.take(t, "receive end", isOpOf(cport.OpRecv, conn))
		if !errors.Is(r.Err, cport.ErrCanceled) || r.Tag != 7 {
			t.Fatalf("receive after Close: %s; want ErrCanceled at once", describe(&r))
		}
		x := cport.MsgOf([]byte("late"))
		closedErr(t, "Send after Close", conn.Send(x, 99))
		x.Release()

		cl.SetReadDeadline(time.Now().Add(longWait))
		got, err := io.ReadAll(cl)
		if err != nil {
			t.Fatalf("client read %d bytes, then %v; want every message, then the end of the stream", len(got), err)
		}
		if len(got) != size*sends {
			t.Fatalf("client read %d bytes; want %d", len(got), size*sends)
		}
		for i, c := range got {
			if c != byte(i%size%251) {
				t.Fatalf("byte %d is %d; want %d", i, c, i%size%251)
			}
		}
		for range sends {
			c := s.take(t, "send", isOp(cport.OpSend))
			if c.Err != nil {
				t.Errorf("send completion %s; want success", describe(&c))
			}
		}
	})
}

// TestConformanceCloseTimeout: a graceful close to a client that does not
// read gives up after Config.CloseTimeout: the connection is reset, and
// what was not written completes with ErrCanceled.
func TestConformanceCloseTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const size, sends = 1 << 20, 32
		p := openPort(t, b, cport.Config{CloseTimeout: 100 * time.Millisecond})
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		cl.SetReadBuffer(16 << 10)
		m := cport.NewMsg(size)
		for i := range sends {
			if err := conn.Send(m, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		m.Release()
		conn.Close()
		canceled := 0
		for range sends {
			c := s.take(t, "send", isOp(cport.OpSend))
			if errors.Is(c.Err, cport.ErrCanceled) {
				canceled++
			} else if c.Err != nil {
				t.Errorf("send completion %s; want success or ErrCanceled", describe(&c))
			}
		}
		if canceled == 0 {
			t.Error("no send canceled, though 32 MiB cannot have been written to a client that does not read")
		}
		cl.SetReadDeadline(time.Now().Add(longWait))
		_, err := io.Copy(io.Discard, cl)
		wantReset(t, "client's read after the close timed out", err)
	})
}

// TestConformanceCloseWrite: CloseWrite ends the stream the client reads
// after every message queued before it; the client may go on sending, and
// the receive goes on; Send after it fails.
func TestConformanceCloseWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		big := cport.NewMsg(1 << 20)
		hello := cport.MsgOf([]byte("hello"))
		conn.SendQuiet(big)
		conn.SendQuiet(hello)
		big.Release()
		hello.Release()
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if err := conn.CloseWrite(); err != nil {
			t.Errorf("second CloseWrite: %v", err)
		}
		x := cport.MsgOf([]byte("x"))
		closedErr(t, "Send after CloseWrite", conn.Send(x, 1))
		x.Release()
		cl.SetReadDeadline(time.Now().Add(longWait))
		got, err := io.ReadAll(cl)
		if err != nil || len(got) != 1<<20+5 || !bytes.HasSuffix(got, []byte("hello")) {
			t.Fatalf("client read %d bytes, %v; want 1 MiB, hello, then the end of the stream", len(got), err)
		}
		mustWrite(t, cl, []byte("still here"))
		if err := cl.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		data, err := recvAll(t, s, conn, 3)
		if string(data) != "still here" || !errors.Is(err, io.EOF) {
			t.Fatalf("server received %q, %v after its CloseWrite; want the client's bytes, then EOF", data, err)
		}
	})
}

// TestConformanceAbortResets: Abort resets the connection: the client's
// read fails with ECONNRESET instead of seeing an end of stream.
func TestConformanceAbortResets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		m := cport.NewMsg(4 << 20)
		conn.SendQuiet(m)
		m.Release()
		if err := conn.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			t.Errorf("Close after Abort: %v", err)
		}
		cl.SetReadDeadline(time.Now().Add(longWait))
		_, err := io.Copy(io.Discard, cl)
		wantReset(t, "client's read after Abort", err)
	})
}

// TestConformanceHalfCloseEcho: the echo server of the example (on the end
// of stream, Close) and a client that sends a line and shuts its writing
// side down, as `printf 'x\n' | nc -N` does: twenty of twenty get their
// echo, then the end of the stream.
func TestConformanceHalfCloseEcho(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		l := listen(t, p, 1)
		runWorkers(t, p, 2, 8, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err == nil {
					c.Conn.RecvMulti(1)
				}
			case cport.OpRecv:
				if c.Err != nil {
					c.Conn.Close() // io.EOF: the echo queued must still go out
					return
				}
				// Queued before the release, which lets the next
				// completion (the end of stream) go to another worker.
				m := cport.MsgOf(c.Buf)
				c.Conn.SendQuiet(m)
				m.Release()
				c.Release()
			}
		})
		if err := l.AcceptMulti(1); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			cl := dialOne(t, l.Addr())
			line := []byte("line " + string(rune('a'+i)) + "\n")
			mustWrite(t, cl, line)
			if err := cl.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			cl.SetReadDeadline(time.Now().Add(longWait))
			got, err := io.ReadAll(cl)
			if err != nil || !bytes.Equal(got, line) {
				t.Fatalf("try %d: read %q, %v; want %q, then the end of the stream", i+1, got, err, line)
			}
			cl.Close()
		}
	})
}

// TestConformancePortCloseLingering: Port.Close closes a connection still
// writing its queue after a graceful Close, at once, and counts it until
// then: the port leaves nothing behind for a timer to close later.
func TestConformancePortCloseLingering(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b, cport.Config{CloseTimeout: time.Hour})
		s := collect(t, p, 2)
		conn, cl := acceptOne(t, p, s)
		cl.SetReadBuffer(16 << 10)
		m := cport.NewMsg(8 << 20)
		conn.SendQuiet(m)
		m.Release()
		conn.Close()
		if n := p.Conns(); n != 1 {
			t.Errorf("Conns() = %d with a connection still writing its queue; want 1", n)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if n := p.Conns(); n != 0 {
			t.Errorf("Conns() after Port.Close = %d; want 0", n)
		}
		cl.SetReadDeadline(time.Now().Add(longWait))
		got, err := io.Copy(io.Discard, cl)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the client's connection stayed open %v after Port.Close", longWait)
		}
		if got >= 8<<20 {
			t.Errorf("client read all %d bytes; want the connection closed by Port.Close before its queue was written", got)
		}
	})
}
