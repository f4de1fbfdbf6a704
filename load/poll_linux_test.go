package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport/chat"
	"cport.dev/cport/internal/sockopt"
	"golang.org/x/sys/unix"
)

// pollPair is one client of a run read by its poll loop, and the server's
// end of its connection.
type pollPair struct {
	c     *client
	srv   net.Conn
	watch int // a duplicate of the client's socket, to watch its receive queue
}

// startPolled connects n clients of a new run (2 senders, frame or line
// framing) to a listener of the test's, and hands each to the poll loops
// as the run's connect would.
func startPolled(t *testing.T, f chat.Framing, n int) (*run, []pollPair) {
	t.Helper()
	return startPolledConfig(t, Config{Framing: f, Clients: n, Senders: 2}, nil)
}

// startPolledConfig is startPolled for a run of cfg (its address set to
// the test's listener), with prepare, if not nil, called on each client's
// connection and the server's end of it before the client is handed over.
func startPolledConfig(t *testing.T, cfg Config, prepare func(i int, conn, srv *net.TCPConn)) (*run, []pollPair) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg.Addrs = []string{ln.Addr().String()}
	cfg = cfg.withDefaults()
	n := cfg.Clients
	r, err := newRun(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.from.Store(0)
	t.Cleanup(r.close)
	pairs := make([]pollPair, n)
	for i := range pairs {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		watch, err := sockopt.DupNonblock(conn.(*net.TCPConn))
		if err != nil {
			t.Fatal(err)
		}
		if prepare != nil {
			prepare(i, conn.(*net.TCPConn), srv.(*net.TCPConn))
		}
		c := r.newClient(i, conn)
		if cfg.WebSocket {
			c.ws = &wsClient{sendKey: 1, ctlKey: 2}
		}
		r.clients[i] = c
		r.startReader(c)
		pairs[i] = pollPair{c: c, srv: srv, watch: watch}
	}
	t.Cleanup(func() {
		for _, p := range pairs {
			if p.watch >= 0 {
				unix.Close(p.watch)
			}
		}
	})
	if r.poll.loops == 0 {
		t.Fatal("no poll loop runs")
	}
	return r, pairs
}

// waitFor polls cond until it holds, or fails the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queued returns the bytes in fd's socket: received and not read (SIOCINQ),
// or sent and not acknowledged (SIOCOUTQ).
func queued(t *testing.T, fd int, req uint) int {
	t.Helper()
	n, err := unix.IoctlGetInt(fd, req)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func srvFD(t *testing.T, conn net.Conn) int {
	t.Helper()
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// Many clients read by the poll loops, each getting the stream of
// TestReceiveSplit cut in two at another byte, the two pieces in separate
// reads, check it as a goroutine reader checks it whole, and see the
// server's close as a disconnection.
func TestPollSplit(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			b := testStream(t, f)
			want := receive(t, f, [][]byte{b})
			r, pairs := startPolled(t, f, len(b)+1)
			for k, p := range pairs {
				if _, err := p.srv.Write(b[:k]); err != nil {
					t.Fatal(err)
				}
				// Once the client has acknowledged the first piece, and its
				// loop read it, the second comes in another read.
				fd := srvFD(t, p.srv)
				waitFor(t, fmt.Sprintf("client %d to read %d bytes", k, k), func() bool {
					return queued(t, fd, unix.SIOCOUTQ) == 0 && queued(t, p.watch, unix.SIOCINQ) == 0
				})
				if _, err := p.srv.Write(b[k:]); err != nil {
					t.Fatal(err)
				}
				p.srv.Close()
			}
			for _, p := range pairs {
				waitFor(t, fmt.Sprintf("client %d's end of stream", p.c.id), p.c.done.Load)
			}
			r.close()
			for k, p := range pairs {
				c := p.c
				pc := r.poll.of(c)
				if pc == nil || pc.fd != -1 {
					t.Fatalf("client %d was not read by a poll loop", k)
				}
				if wantDetached := c.own < 0 && k > 0; pc.detached != wantDetached {
					t.Errorf("client %d (sender %d): detached %v, want %v", k, c.own, pc.detached, wantDetached)
				}
				c.chk.errs.Lost = c.chk.missing([]uint64{8, 7})
				got := received{errs: c.chk.errs, accounted: c.accounted, unheard: c.unheard, latencies: want.latencies}
				if got != want {
					t.Fatalf("cut at byte %d of %d: %+v, want %+v", k, len(b), got, want)
				}
				if !errors.Is(c.readErr, io.EOF) {
					t.Errorf("client %d: read error %v, want EOF (a disconnection)", k, c.readErr)
				}
			}
			if got, wantAll := r.lat.merged().TotalCount(), want.latencies*int64(len(pairs)); got != wantAll {
				t.Errorf("%d latencies recorded, want %d", got, wantAll)
			}
		})
	}
}

// Closing the run ends the receive side of every client of the loops, as
// no disconnection, and closes their connections: the server sees each
// end, though the loops held duplicates of the sockets.
func TestPollClose(t *testing.T) {
	r, pairs := startPolled(t, chat.Frame, 50)
	for i := range pairs {
		unix.Close(pairs[i].watch) // it would keep the socket open
		pairs[i].watch = -1
	}
	r.close()
	buf := make([]byte, 1)
	for _, p := range pairs {
		if !p.c.done.Load() || p.c.readErr != nil {
			t.Errorf("client %d: done %v, read error %v; want done, no error", p.c.id, p.c.done.Load(), p.c.readErr)
		}
		p.srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := p.srv.Read(buf); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d: the server read %v, want the end of the connection", p.c.id, err)
		}
	}
}

// The poll loops serve one queue of ready sockets, not a share of the
// clients each: a loop held up on one client (here, blocked writing the
// pong of a server that never reads) leaves every other client to the
// others, which read each as soon as something arrives. With a set of
// clients per loop, the clients of a loop that lagged (say, one holding no
// sender, whose lag no closed-loop sender feels) had nobody else to read
// them.
func TestPollLoopHeldUp(t *testing.T) {
	const n = 16
	r, pairs := startPolledConfig(t, Config{WebSocket: true, Clients: n, Senders: 2}, func(i int, conn, srv *net.TCPConn) {
		if i == 0 { // small buffers, soon full of pongs
			conn.SetWriteBuffer(4096)
			srv.SetReadBuffer(4096)
		}
	})
	if loops := pollLoops(r); loops < 2 {
		t.Skipf("%d poll loop: nothing to hold up", loops)
	}
	// Pings to client 0 until its send buffer is full of pongs the server
	// does not read, with pings still to answer: its next turn blocks the
	// loop that takes it (its connection's Write), until the run closes.
	ping := make([]byte, 0, 64<<10)
	for len(ping)+2+125 <= cap(ping) {
		ping = append(ping, 0x80|wsPing, 125)
		ping = append(ping, make([]byte, 125)...)
	}
	stuck := pairs[0]
	go func() {
		for !r.closing.Load() {
			if _, err := stuck.srv.Write(ping); err != nil {
				return
			}
		}
	}()
	waitFor(t, "client 0's send buffer to fill", func() bool {
		pfd := []unix.PollFd{{Fd: int32(stuck.watch), Events: unix.POLLOUT}}
		k, err := unix.Poll(pfd, 0)
		return err == nil && k == 0 && queued(t, stuck.watch, unix.SIOCINQ) > 0
	})
	for _, p := range pairs[1:] {
		if _, err := p.srv.Write([]byte{0x80 | wsPing, 0}); err != nil {
			t.Fatal(err)
		}
		fd := srvFD(t, p.srv)
		waitFor(t, fmt.Sprintf("client %d's ping to be read", p.c.id), func() bool {
			return queued(t, fd, unix.SIOCOUTQ) == 0 && queued(t, p.watch, unix.SIOCINQ) == 0
		})
	}
}

func pollLoops(r *run) int { return r.poll.loops }
