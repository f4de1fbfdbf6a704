package cport

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// uringOrSkip skips t where io_uring is unavailable.
func uringOrSkip(t *testing.T) {
	p, err := Open(Config{Backend: "uring"})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("uring: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

// wakes returns how many times p's engine woke one of its own threads.
func wakes(p *Port) uint64 { return p.eng.Stats().Wakes }

// TestURingWorkerWrites checks that a worker writes the sends its batch
// queued itself, at its Submit: the ring's loop is not woken for them.
func TestURingWorkerWrites(t *testing.T) {
	uringOrSkip(t)
	p, w, conn, cl := acceptGated(t, "uring", 0)
	defer w.Close()
	before := wakes(p)
	const rounds = 20
	for i := range rounds {
		// A batch of the worker's: a completion, a send, its Submit.
		p.Post(0, 0, 0)
		if _, err := w.WaitOne(gateWait); err != nil {
			t.Fatal(err)
		}
		m := MsgOf(bytes.Repeat([]byte{byte('a' + i)}, 100))
		if err := conn.SendQuiet(m); err != nil {
			t.Fatal(err)
		}
		m.Release()
		if _, err := w.Wait(make([]Completion, 1), 0); !errors.Is(err, ErrTimeout) { // submits
			t.Fatalf("Wait: %v", err)
		}
		mustReadString(t, cl, string(bytes.Repeat([]byte{byte('a' + i)}, 100)))
	}
	if got := wakes(p) - before; got != 0 {
		t.Errorf("the loop was woken %d times for %d sends of a worker; want 0: the worker writes", got, rounds)
	}
}

// TestURingWorkerWriteFull checks that a worker's write to a peer that
// does not read leaves the rest to the ring rather than wait: the worker
// goes on with its completions, and every byte arrives once the peer
// reads.
func TestURingWorkerWriteFull(t *testing.T) {
	uringOrSkip(t)
	p, w, conn, cl := acceptGated(t, "uring", 0)
	defer w.Close()
	const size = 16 << 20 // far more than the socket buffers hold
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	p.Post(0, 0, 0)
	if _, err := w.WaitOne(gateWait); err != nil {
		t.Fatal(err)
	}
	m := MsgOf(data)
	if err := conn.Send(m, 9); err != nil {
		t.Fatal(err)
	}
	m.Release()
	// The Wait submits (writing what the socket takes), then must get the
	// posted completion: a worker stuck in the write would not.
	p.Post(1, 2, 3)
	c, err := w.WaitOne(gateWait)
	if err != nil || c.Op != OpPost || c.Key != 1 {
		t.Fatalf("after the send: %v %+v; want the posted completion", err, c)
	}
	got := make([]byte, size)
	if _, err := io.ReadFull(cl, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes arrived changed")
	}
	c, err = w.WaitOne(gateWait)
	if err != nil || c.Op != OpSend || c.Tag != 9 || c.Err != nil || c.N != size {
		t.Fatalf("send completion: %v %+v; want %d bytes written", err, c, size)
	}
}
