//go:build unix

package load

import (
	"fmt"
	"net"
	"syscall"
	"testing"

	"cport.dev/cport/chat"
)

// Over a real socket, read with read(2) (rawLoop), messages that arrive a
// byte at a time, a segment each, are checked as when whole, and the end
// of stream is seen: reading until EAGAIN, or waiting after short reads
// (run.skipEmpty) until stopSkipping.
func TestReceiveRawSocket(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		for _, skip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/skip=%v", f, skip), func(t *testing.T) {
				testReceiveRawSocket(t, f, skip)
			})
		}
	}
}

func testReceiveRawSocket(t *testing.T, f chat.Framing, skip bool) {
	b := testStream(t, f)
	want := receive(t, f, [][]byte{b})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	written := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			written <- err
			return
		}
		defer conn.Close()
		for i := range b { // TCP_NODELAY is on: a segment per byte
			if _, err := conn.Write(b[i : i+1]); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestReceiver(t, f, 2)
	c.conn = conn
	c.r.clients[c.id] = c
	c.in.buf = make([]byte, c.r.bufSize)
	c.r.skipEmpty.Store(skip)
	type result struct {
		ran bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ran, err := c.rawLoop(rc)
		done <- result{ran, err}
	}()
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	c.r.stopSkipping() // the writer closed: the reader must see it, whatever it waited for
	if res := <-done; !res.ran || res.err != nil {
		t.Fatalf("rawLoop: ran %v, error %v", res.ran, res.err)
	}
	c.publish()
	c.flushLatencies()
	c.chk.errs.Lost = c.chk.missing([]uint64{8, 7})
	got := received{errs: c.chk.errs, accounted: c.accounted, unheard: c.unheard, latencies: c.r.lat.merged().TotalCount()}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
