package sockopt

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// streamPair returns a connected pair of stream sockets, the first
// non-blocking, both closed at the end of the test.
func streamPair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

// TestWriteAllWaitsForRoom writes far more than a socket buffer holds to a
// peer that starts reading only once the writer has found the buffer full:
// WriteAll must wait for room, not fail or drop bytes.
func TestWriteAllWaitsForRoom(t *testing.T) {
	w, r := streamPair(t)
	want := make([]byte, 4<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	full := make(chan struct{})
	var fulls atomic.Int64
	got := make(chan []byte, 1)
	go func() {
		<-full
		b := make([]byte, 0, len(want))
		for len(b) < len(want) {
			n, err := unix.Read(r, b[len(b):min(len(b)+64<<10, cap(b))])
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				break
			}
			b = b[:len(b)+n]
		}
		got <- b
	}()
	err := WriteAll(w, want, func() bool {
		if fulls.Add(1) == 1 {
			close(full)
		}
		return false
	})
	if err != nil {
		t.Fatalf("WriteAll: %v", err)
	}
	if fulls.Load() == 0 {
		t.Fatal("the socket was never full: the test did not test waiting")
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the peer read %d bytes, not the %d written, or not the same", len(b), len(want))
	}
}

// TestWriteAllStops writes to a peer that never reads: WriteAll returns
// once stop says so, with an error that matches net.ErrClosed.
func TestWriteAllStops(t *testing.T) {
	w, _ := streamPair(t)
	var asked atomic.Int64
	err := WriteAll(w, make([]byte, 4<<20), func() bool { return asked.Add(1) == 3 })
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteAll to a full socket, told to stop: %v, want net.ErrClosed", err)
	}
	if asked.Load() != 3 {
		t.Fatalf("stop was asked %d times, want 3", asked.Load())
	}
	t.Log(err)
}

// TestWriteAllError returns the write's error when the peer has gone.
func TestWriteAllError(t *testing.T) {
	w, r := streamPair(t)
	if err := unix.Shutdown(r, unix.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	err := WriteAll(w, []byte("hello"), nil)
	if !errors.Is(err, unix.EPIPE) {
		t.Fatalf("WriteAll to a peer that shut its read side: %v, want EPIPE", err)
	}
}
