package chat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of this file check how the server ends connections: a client
// that half-closes (nc -N) still gets everything relayed, its own echo
// included, until the server closes it gracefully; a client evicted for
// misbehaving is reset, and the kernel keeps nothing of it.

// TestHalfCloseEcho is `printf 'x\n' | nc -N host port`, 20 times in a
// row: a client sends one message and shuts its sending side down at
// once, then reads. Each time it must get its echo, then a graceful end of
// stream once the server lets it go.
func TestHalfCloseEcho(t *testing.T) {
	const tries = 20
	runMatrix(t, allFramings, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = 20 * time.Millisecond
		srv := startServer(t, cfg)
		msg := encode(s.framing, "x")
		if s.framing == Raw {
			msg = []byte("x\n")
		}
		for i := range tries {
			got, err := sendAndHalfClose(srv.addr(), msg)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("try %d of %d: received %q, then %v; want %q, then the end of stream", i+1, tries, got, err, msg)
			}
		}
		// Relayed: a worker adds its tally after its batch (see Stats).
		st := srv.waitStats("every client gone, each message counted", func(st Stats) bool {
			return st.Active == 0 && st.HalfClosed == 0 && st.Relayed >= tries
		})
		if st.Accepted != tries || st.Relayed < tries || st.SlowConsumers+st.BadInput+st.IdleTimeouts != 0 {
			t.Errorf("stats %+v; want %d accepted, relayed, and no disconnect for cause", st, tries)
		}
	})
}

// sendAndHalfClose is nc -N: it connects to addr, writes msg, shuts its
// writing side down (CloseWrite, a FIN), and reads until the end of
// stream. It returns what it read, and nil if the stream ended gracefully.
func sendAndHalfClose(addr string, msg []byte) ([]byte, error) {
	nc, err := net.DialTimeout("tcp", addr, longWait)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	c := nc.(*net.TCPConn)
	c.SetDeadline(time.Now().Add(longWait))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	if err := c.CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(c) // nil at io.EOF
}

// TestHalfCloseHearsTheRoom checks that a half-closed client still gets
// what others send after its end of stream, until it leaves: then, as soon
// as a write to it fails, the server lets it go without waiting for
// HalfCloseTimeout.
func TestHalfCloseHearsTheRoom(t *testing.T) {
	runMatrix(t, allFramings, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = time.Hour // never, in this test
		srv := startServer(t, cfg)
		a, b := srv.dial("a", keepReads), srv.dial("b", keepReads)
		srv.waitActive(2)

		m1 := encode(s.framing, "a, then an end of stream")
		a.send(m1)
		if err := a.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		a.expect(m1)
		b.expect(m1)
		// The server has seen a's end of stream: a stays.
		srv.waitStats("a half-closed", func(st Stats) bool { return st.HalfClosed == 1 })
		if st := srv.Stats(); st.Active != 2 {
			t.Fatalf("stats %+v; want the half-closed client still held", st)
		}

		m2 := encode(s.framing, "b, after a's end of stream")
		b.send(m2)
		a.expect(concat(m1, m2))
		b.expect(concat(m1, m2))
		if !a.isOpen() {
			t.Fatal("the half-closed client's stream ended")
		}

		// a goes for good. Writes to it then fail (its system answers the
		// first with a reset), and the server lets it go at the first
		// failure, long before HalfCloseTimeout: b talks until then.
		a.conn.Close()
		<-a.done
		want := concat(m1, m2)
		deadline := time.Now().Add(longWait)
		for i := 0; srv.Stats().Active != 1; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v after b sent %d messages in %v; want the client that left let go", srv.Stats(), i, longWait)
			}
			m := encode(s.framing, fmt.Sprint("to a departed client ", i))
			b.send(m)
			want = append(want, m...)
			b.expect(want)
		}
		if st := srv.Stats(); st.HalfClosed != 0 || st.SlowConsumers+st.BadInput+st.IdleTimeouts != 0 {
			t.Errorf("stats %+v; want no half-closed client left and no disconnect for cause", st)
		}
		if lines := srv.log.lines("client disconnected"); len(lines) > 0 {
			t.Errorf("a client leaving was logged as a disconnection: %q", lines)
		}
	})
}

// TestHalfCloseTimeout checks that a half-closed client is let go after
// HalfCloseTimeout, with no idle timeout set (the room must not keep it
// forever), gracefully: its stream ends with a FIN after everything
// queued to it.
func TestHalfCloseTimeout(t *testing.T) {
	runMatrixParallel(t, allFramings, func(t *testing.T, s setup) {
		const linger = 300 * time.Millisecond
		cfg := s.config()
		cfg.HalfCloseTimeout = linger
		srv := startServer(t, cfg)
		a, b := srv.dial("a", keepReads), srv.dial("b", keepReads)
		srv.waitActive(2)
		m := encode(s.framing, "and now I only listen")
		a.send(m)
		ended := time.Now()
		if err := a.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitEnd(); !errors.Is(err, io.EOF) {
			t.Errorf("the half-closed client's stream ended with %v; want a graceful end (EOF)", err)
		}
		if took := time.Since(ended); took < linger {
			t.Errorf("the half-closed client was let go %v after its end of stream; want HalfCloseTimeout, %v", took, linger)
		}
		if got, _, _ := a.received(); !bytes.Equal(got, m) {
			t.Errorf("the half-closed client received %q; want its echo %q", got, m)
		}
		b.expect(m)
		if st := srv.waitStats("a gone", func(st Stats) bool { return st.Active == 1 }); st.HalfClosed != 0 || st.IdleTimeouts != 0 {
			t.Errorf("stats %+v; want no half-closed client left, no idle timeout", st)
		}
		if !b.isOpen() {
			t.Error("the other client was disconnected")
		}
	})
}

// TestHalfCloseNone checks a negative HalfCloseTimeout: a client is let go
// at its end of stream, after what was queued to it then.
func TestHalfCloseNone(t *testing.T) {
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = -1
		srv := startServer(t, cfg)
		m := encode(s.framing, "bye")
		got, err := sendAndHalfClose(srv.addr(), m)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("received %q, then %v; want %q, then the end of stream", got, err, m)
		}
		srv.waitStats("the client gone", func(st Stats) bool { return st.Accepted == 1 && st.Active == 0 })
	})
}

// isReset reports whether err is a connection reset by the peer (or the
// end of the stream where a reader sees a reset so: resetSeenAsEOF).
func isReset(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) || resetSeenAsEOF && errors.Is(err, io.EOF) {
		return true
	}
	var errno syscall.Errno
	return runtime.GOOS == "windows" && errors.As(err, &errno) && errno == 10054 // WSAECONNRESET
}

// procTCPStates returns the states (as /proc/net/tcp names them, in hex:
// 01 ESTABLISHED, 04 FIN_WAIT1...) of the sockets of this network
// namespace whose local address is local and remote address remote. ok is
// false where there is no /proc/net/tcp.
func procTCPStates(local, remote string) (states []string, ok bool) {
	l, err1 := netip.ParseAddrPort(local)
	r, err2 := netip.ParseAddrPort(remote)
	if err1 != nil || err2 != nil || runtime.GOOS != "linux" {
		return nil, false
	}
	file := "/proc/net/tcp"
	if !l.Addr().Is4() {
		file = "/proc/net/tcp6"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, false
	}
	wl, wr := procAddr(l), procAddr(r)
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == wl && f[2] == wr {
			states = append(states, f[3])
		}
	}
	return states, true
}

// procAddr writes ap as /proc/net/tcp does: each 32-bit word of the
// address as the host's integer, in hex, then the port.
func procAddr(ap netip.AddrPort) string {
	var b strings.Builder
	a := ap.Addr().AsSlice()
	for i := 0; i < len(a); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(a[i:]))
	}
	fmt.Fprintf(&b, ":%04X", ap.Port())
	return b.String()
}

// waitSocketGone waits until the server holds no socket of the client at
// clientAddr in its kernel: a client reset leaves none, where one closed
// with unsent data would sit in FIN-WAIT-1. It does nothing where there
// is no /proc/net/tcp.
func waitSocketGone(t *testing.T, serverAddr, clientAddr string) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for {
		states, ok := procTCPStates(serverAddr, clientAddr)
		if !ok || len(states) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the server let %s go, the kernel still holds its socket, in state %v (/proc/net/tcp: 04 is FIN_WAIT1)", longWait, clientAddr, states)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
