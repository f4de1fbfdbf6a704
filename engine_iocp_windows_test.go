package cport

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestIOCPRecvSendStats: on the iocp engine, an accepted connection knows
// its peer (from AcceptEx's addresses), receives what arrives after it sat
// idle, and its sends are WSASend calls the engine counts, on its one loop.
// The engine's own tests (internal/engine/iocp) look inside: the idle
// connection's zero-byte receive, the buffers it does not hold.
func TestIOCPRecvSendStats(t *testing.T) {
	p, err := Open(Config{Backend: "iocp"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	l, err := p.Listen("tcp", "127.0.0.1:0", 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Accept(1); err != nil {
		t.Fatal(err)
	}
	cl, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	w := p.Worker()
	defer w.Close()
	batch := make([]Completion, 4)
	n, err := w.Wait(batch, 30*time.Second)
	if err != nil || n != 1 || batch[0].Op != OpAccept || batch[0].Err != nil {
		t.Fatalf("accept: %d, %v, %+v", n, err, batch[0])
	}
	c := batch[0].Conn
	if c.RemoteAddr().String() != cl.LocalAddr().String() {
		t.Errorf("RemoteAddr %v; want %v", c.RemoteAddr(), cl.LocalAddr())
	}
	if err := c.RecvMulti(2); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Wait(batch, 50*time.Millisecond); err != ErrTimeout {
		t.Fatalf("idle connection: %d, %v, %+v", n, err, batch[0])
	}
	if _, err := cl.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	n, err = w.Wait(batch, 30*time.Second)
	if err != nil || n != 1 || batch[0].Op != OpRecv || string(batch[0].Buf) != "hello" || batch[0].Key != 0 || batch[0].Tag != 2 {
		t.Fatalf("receive: %d, %v, %+v", n, err, batch[0])
	}
	batch[0].Release()

	before := p.eng.Stats().Writes
	m := MsgOf([]byte("world"))
	err = c.Send(m, 3)
	m.Release()
	if err != nil {
		t.Fatal(err)
	}
	n, err = w.Wait(batch, 30*time.Second)
	if err != nil || n != 1 || batch[0].Op != OpSend || batch[0].N != 5 || batch[0].Tag != 3 {
		t.Fatalf("send: %d, %v, %+v", n, err, batch[0])
	}
	got := make([]byte, 5)
	cl.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(cl, got); err != nil || string(got) != "world" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if st := p.eng.Stats(); st.Writes <= before || st.Loops != 1 {
		t.Errorf("Stats %+v; want Writes > %d, Loops 1", st, before)
	}
}
