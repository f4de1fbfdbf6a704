package cport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// gateWait bounds the gate tests' waits for what must happen.
const gateWait = 60 * time.Second

// writes returns how many write system calls p's engine has made (writev
// calls, sendmsg submissions).
func writes(p *Port) uint64 { return p.eng.Stats().Writes }

// forGatedEngines runs f once per engine with a flush gate that opens here.
func forGatedEngines(t *testing.T, f func(t *testing.T, backend string)) {
	for _, name := range []string{"uring", "epoll"} {
		t.Run(name, func(t *testing.T) {
			p, err := Open(Config{Backend: name})
			if errors.Is(err, ErrUnavailable) {
				t.Skipf("%s: %v", name, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
			f(t, name)
		})
	}
}

// acceptGated accepts one client on a fresh port of the backend, its
// writes held for at most delay (Config.FlushDelay), and returns both ends,
// the port and a worker of it.
func acceptGated(t *testing.T, backend string, delay time.Duration) (*Port, *Worker, *Conn, net.Conn) {
	t.Helper()
	p, err := Open(Config{Backend: backend, FlushDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ln, err := p.Listen("tcp", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	w := p.Worker()
	if err := ln.Accept(7); err != nil {
		t.Fatal(err)
	}
	cl, err := net.DialTimeout("tcp", ln.Addr().String(), gateWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c, err := w.WaitOne(gateWait)
	if err != nil || c.Op != OpAccept || c.Err != nil {
		t.Fatalf("accept: %v %+v", err, c)
	}
	return p, w, c.Conn, cl
}

// TestGateCoalesce checks that messages sent during a worker's batch go
// out in one write, at its submit.
func TestGateCoalesce(t *testing.T) {
	forGatedEngines(t, func(t *testing.T, backend string) {
		const k, size = 100, 64
		p, w, conn, cl := acceptGated(t, backend, time.Hour) // only the submit starts the write
		defer w.Close()
		// Become a running worker, as in a batch of completions.
		p.Post(0, 0, 0)
		if _, err := w.WaitOne(gateWait); err != nil {
			t.Fatal(err)
		}
		before := writes(p)
		for i := range k {
			m := MsgOf(bytes.Repeat([]byte{byte(i)}, size))
			if err := conn.SendQuiet(m); err != nil {
				t.Fatal(err)
			}
			m.Release()
		}
		// The uring loop may still be busy with the accept's round: give
		// it time to (wrongly) start a send.
		time.Sleep(20 * time.Millisecond)
		if got := writes(p) - before; got != 0 {
			t.Errorf("%d writes before the batch ended; want them deferred to submit", got)
		}
		if _, err := w.Wait(make([]Completion, 1), 0); !errors.Is(err, ErrTimeout) { // submits, then finds nothing
			t.Fatalf("Wait: %v", err)
		}
		cl.SetReadDeadline(time.Now().Add(gateWait))
		buf := make([]byte, k*size)
		if _, err := io.ReadFull(cl, buf); err != nil {
			t.Fatal(err)
		}
		// An engine counts a write once its system call returns, which
		// may be after the client has read it: wait for the first.
		got := writes(p) - before
		for deadline := time.Now().Add(gateWait); got == 0 && time.Now().Before(deadline); got = writes(p) - before {
			time.Sleep(time.Millisecond)
		}
		if got != 1 {
			t.Errorf("%d writes for %d messages queued in one batch; want 1", got, k)
		}
		for i := range k {
			if b := buf[i*size : (i+1)*size]; !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, size)) {
				t.Fatalf("message %d arrived as %v", i, b)
			}
		}
	})
}

// TestGateTimer checks that a write deferred by a running worker that
// never reaches its submit still happens.
func TestGateTimer(t *testing.T) {
	forGatedEngines(t, func(t *testing.T, backend string) {
		p, w, conn, cl := acceptGated(t, backend, 0)
		defer w.Close()
		p.Post(0, 0, 0)
		if _, err := w.WaitOne(gateWait); err != nil {
			t.Fatal(err)
		}
		m := MsgOf([]byte("late but sure"))
		conn.SendQuiet(m)
		m.Release()
		// No Wait: the worker stays running, so no submit comes.
		mustReadString(t, cl, "late but sure")
	})
}

// TestGateOtherSender checks that a send from a goroutine that is not a
// worker goes out although no worker runs to submit it.
func TestGateOtherSender(t *testing.T) {
	forGatedEngines(t, func(t *testing.T, backend string) {
		_, w, conn, cl := acceptGated(t, backend, time.Hour) // the timer must not be what sends it
		w.Close()                                            // no worker runs
		m := MsgOf([]byte("from elsewhere"))
		conn.SendQuiet(m)
		m.Release()
		mustReadString(t, cl, "from elsewhere")
	})
}

// mustReadString reads len(want) bytes from c and fails unless they are want.
func mustReadString(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(gateWait))
	b := make([]byte, len(want))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("read %q; want %q", b, want)
	}
}
