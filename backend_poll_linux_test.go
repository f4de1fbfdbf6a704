//go:build linux

package cport_test

import (
	"io"
	"net"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestPollPastFDSetSize: poll, unlike select, watches descriptors numbered
// past FD_SETSIZE: a connection accepted there receives and sends.
func TestPollPastFDSetSize(t *testing.T) {
	p, err := cport.Open(cport.Config{Backend: "poll"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	holdFDsUpTo(t, 1100)
	l, err := p.Listen("tcp4", "127.0.0.1:0", 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AcceptMulti(1); err != nil {
		t.Fatal(err)
	}
	w := p.Worker()
	defer w.Close()
	c, comp := dialAccept(t, l, w)
	if comp.Op != cport.OpAccept || comp.Err != nil {
		t.Fatalf("accept: %v %v", comp.Op, comp.Err)
	}
	conn := comp.Conn
	if err := conn.Recv(2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	comp, err = w.WaitOne(30 * time.Second)
	if err != nil || comp.Op != cport.OpRecv || string(comp.Buf) != "hello" {
		t.Fatalf("recv: %v %v %q %v", err, comp.Op, comp.Buf, comp.Err)
	}
	comp.Release()
	m := cport.MsgOf([]byte("world"))
	if err := conn.Send(m, 3); err != nil {
		t.Fatal(err)
	}
	m.Release()
	comp, err = w.WaitOne(30 * time.Second)
	if err != nil || comp.Op != cport.OpSend || comp.Err != nil {
		t.Fatalf("send: %v %v %v", err, comp.Op, comp.Err)
	}
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "world" {
		t.Fatalf("client read %q %v", buf, err)
	}
}

// dialAccept connects a client to l and returns it with the completion w
// dequeues next.
func dialAccept(t *testing.T, l *cport.Listener, w *cport.Worker) (net.Conn, cport.Completion) {
	t.Helper()
	c := dialOne(t, l.Addr())
	comp, err := w.WaitOne(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, comp
}
