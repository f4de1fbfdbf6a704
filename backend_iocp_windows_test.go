package cport

import (
	"net"
	"testing"
	"time"
)

// TestIOCPIdleConnPinsNoBuffer: a connection waiting for data has only its
// zero-byte WSARecv pending, no receive buffer; data then arrives through
// the drain.
func TestIOCPIdleConnPinsNoBuffer(t *testing.T) {
	t.Logf("Wine: %v; FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: %v", UnderWine(), skipOnSuccess())
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
	s := c.sys.(*iocpSock)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		pending, pumping := s.readPending, s.pumping
		s.mu.Unlock()
		if pending && !pumping {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no zero-byte receive pending on an idle connection")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := cl.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	n, err = w.Wait(batch, 30*time.Second)
	if err != nil || n != 1 || batch[0].Op != OpRecv || string(batch[0].Buf) != "hello" || batch[0].Key != 0 || batch[0].Tag != 2 {
		t.Fatalf("receive: %d, %v, %+v", n, err, batch[0])
	}
	batch[0].Release()
}
