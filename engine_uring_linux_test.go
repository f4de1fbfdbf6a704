package cport_test

// Tests of what only the uring engine has: a provided buffer ring that runs
// dry, a completion queue smaller than the bursts it carries, closing while
// sends are in the kernel, ten thousand connections, and the fallback when
// io_uring is refused.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport"
)

// uringOnly skips the test where io_uring cannot run.
func uringOnly(t *testing.T) {
	t.Helper()
	p, err := cport.Open(cport.Config{Backend: "uring"})
	if err != nil {
		t.Skipf("uring unavailable here: %v", err)
	}
	p.Close()
}

// TestURingSmallBufferRing: four receive buffers against a burst of
// thousands of messages; the receive runs dry (-ENOBUFS), is re-armed as
// buffers come back, and loses nothing.
func TestURingSmallBufferRing(t *testing.T) {
	uringOnly(t)
	p := openPort(t, "uring", cport.Config{RecvBufferSize: 256, RingEntries: 64, RecvBuffers: 4})
	s := collect(t, p, 2)
	conn, cl := acceptOne(t, p, s)

	rng := rand.New(rand.NewPCG(1, 2))
	var want bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&want, "message %d %s\n", i, strings.Repeat("x", rng.IntN(300)))
	}
	go func() {
		cl.Write(want.Bytes())
		cl.CloseWrite()
	}()
	got, err := recvAll(t, s, conn, 7)
	if !errors.Is(err, io.EOF) {
		t.Errorf("receive ended with %v; want io.EOF", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("received %d bytes, not the %d written (first difference at %d)", len(got), want.Len(), firstDiff(got, want.Bytes()))
	}
	if st := p.Stats(); st.Starved == 0 || st.Reaped == 0 {
		t.Errorf("stats %+v; want receives starved of buffers counted, and completions", st)
	}
}

// TestURingSmallCompletionQueue: a submission queue of 4 and a completion
// queue of 16 against hundreds of connections echoing at once: the overflow
// list is flushed, nothing is lost.
func TestURingSmallCompletionQueue(t *testing.T) {
	uringOnly(t)
	n := 300
	if testing.Short() {
		n = 100
	}
	p := openPort(t, "uring", cport.Config{RingEntries: 4, RecvBuffers: 64})
	echo(t, p)
	l := listen(t, p, 1)
	if err := l.AcceptMulti(1); err != nil {
		t.Fatal(err)
	}
	clients := dial(t, l.Addr(), n)
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			msg := []byte(fmt.Sprintf("client %d says hello %s\n", i, strings.Repeat("y", i)))
			var want bytes.Buffer
			for range 20 {
				cl.Write(msg)
				want.Write(msg)
			}
			cl.SetReadDeadline(time.Now().Add(longWait))
			got, err := readN(cl, want.Len())
			if err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Errorf("client %d: echo %q, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	st := p.Stats()
	if st.Reaped < uint64(n) {
		t.Errorf("stats %+v; want the %d accepts' completions at least", st, n)
	}
	t.Logf("completion queue overflows: %d", st.Overflows)
}

// TestURingCloseWhileSending: connections closed while large sends are in
// the kernel, half aborted, half closed gracefully to clients that do not
// read, so that their close times out and resets them with a send still in
// the kernel; every send completes (written or ErrCanceled), and the port
// closes without leaking.
func TestURingCloseWhileSending(t *testing.T) {
	uringOnly(t)
	const n = 64
	p := openPort(t, "uring", cport.Config{CloseTimeout: 100 * time.Millisecond})
	s := collect(t, p, 2)
	conns, _ := acceptN(t, p, s, n)
	m := cport.NewMsg(8 << 20)
	for _, c := range conns {
		for tag := range uint64(3) {
			if err := c.Send(m, tag); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.Release()
	for i, c := range conns {
		if i%2 == 0 {
			c.Abort()
		} else {
			c.Close()
		}
	}
	for range 3 * n {
		c := s.take(t, "send", isOp(cport.OpSend))
		if c.Err != nil && !errors.Is(c.Err, cport.ErrCanceled) {
			t.Errorf("send completion %s; want success or ErrCanceled", describe(&c))
		}
	}
}

// TestURingWorkerWriteClose: as TestURingCloseWhileSending, with the sends
// queued by workers, which write them themselves at their Submit, while the
// test's goroutine closes and aborts the connections: a close racing the
// worker's write waits for it before the socket goes, and every send
// completes.
func TestURingWorkerWriteClose(t *testing.T) {
	uringOnly(t)
	const n = 64
	p := openPort(t, "uring", cport.Config{CloseTimeout: 100 * time.Millisecond})
	s := &sink{ready: make(chan struct{}, 1)}
	var conns []*cport.Conn // set before the Posts that the workers send on
	queued := make(chan int, n)
	m := cport.NewMsg(2 << 20)
	t.Cleanup(m.Release)
	runWorkers(t, p, 2, 4, func(c *cport.Completion) {
		if c.Op != cport.OpPost {
			s.put(c)
			return
		}
		// One connection per post: a worker's batch flushes a few, which
		// its Submit writes itself.
		for tag := range uint64(3) {
			if err := conns[c.Key].Send(m, tag); err != nil {
				t.Errorf("send: %v", err)
			}
		}
		queued <- int(c.Key) // to be closed while the Submit writes
		s.put(c)
	})
	conns, _ = acceptN(t, p, s, n)
	for i := range n {
		if err := p.Post(uint64(i), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if i := <-queued; i%2 == 0 {
			conns[i].Abort()
		} else {
			conns[i].Close()
		}
	}
	for range n {
		s.take(t, "the posts", isOp(cport.OpPost))
	}
	// Every send completes, written or canceled, and every connection
	// leaves the port.
	var written, canceled int
	for range 3 * n {
		c := s.take(t, "send", isOp(cport.OpSend))
		switch {
		case c.Err == nil:
			written++
		case errors.Is(c.Err, cport.ErrCanceled):
			canceled++
		default:
			t.Errorf("send completion %s; want success or ErrCanceled", describe(&c))
		}
	}
	t.Logf("%d sends written, %d canceled", written, canceled)
	eventually(t, "every connection to leave the port", func() bool { return p.Conns() == 0 })
}

// TestURingResetLeavesNothing: a connection reset (Abort) with megabytes
// still unsent leaves no socket of the server's in FIN-WAIT or TIME-WAIT
// (SO_LINGER {1, 0} before the close); one closed gracefully goes through
// FIN-WAIT, then TIME-WAIT once its client closes too. It reads the
// kernel's tables (/proc/net/tcp and tcp6) for the server's side of each
// connection, its local port and its client's, waiting on states, not on
// time.
func TestURingResetLeavesNothing(t *testing.T) {
	uringOnly(t)
	p := openPort(t, "uring")
	s := collect(t, p, 2)

	// Reset, with a send in the kernel: the client has read some of it,
	// and more waits in the server's socket.
	conn, cl := acceptOne(t, p, s)
	m := cport.NewMsg(8 << 20)
	conn.SendQuiet(m)
	m.Release()
	mustReadN(t, cl, 1)
	if err := conn.Abort(); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(longWait))
	if _, err := io.Copy(io.Discard, cl); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("client's read after Abort: %v; want a reset", err)
	}
	// The client has the RST, which the close sent after it took the
	// socket out of the kernel's tables (tcp_disconnect): no waiting.
	if st := tcpStates(t, conn.LocalAddr(), cl.LocalAddr()); len(st) > 0 {
		t.Errorf("server's socket after a reset: %v; want none", st)
	}

	// Graceful: the server's FIN, acknowledged by the client (FIN-WAIT-2),
	// then the client's (TIME-WAIT).
	conn, cl = acceptOne(t, p, s)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(longWait))
	if got, err := io.ReadAll(cl); err != nil || len(got) > 0 {
		t.Fatalf("client read %d bytes, %v; want an end of stream", len(got), err)
	}
	laddr, raddr := conn.LocalAddr(), cl.LocalAddr()
	var st []string
	eventually(t, "the server's socket in FIN-WAIT after a graceful close", func() bool {
		st = tcpStates(t, laddr, raddr)
		return len(st) == 1 && (st[0] == "FIN_WAIT1" || st[0] == "FIN_WAIT2")
	})
	cl.Close()
	eventually(t, "the server's socket in TIME-WAIT once the client closed", func() bool {
		st = tcpStates(t, laddr, raddr)
		return len(st) == 1 && st[0] == "TIME_WAIT"
	})
}

// tcpStates returns the states of the sockets /proc/net/tcp and tcp6 list
// with local port laddr's and remote port raddr's: a connection's server
// side, named by its port and its client's (unlike its port alone, the pair
// is the connection's: a socket of an earlier listener on the same port,
// still in TIME-WAIT, has another client).
func tcpStates(t testing.TB, laddr, raddr net.Addr) []string {
	t.Helper()
	names := map[string]string{
		"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
		"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
		"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
	}
	lport := fmt.Sprintf(":%04X", laddr.(*net.TCPAddr).Port)
	rport := fmt.Sprintf(":%04X", raddr.(*net.TCPAddr).Port)
	var states []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		for _, line := range lines[1:] { // a header first
			// sl local_address rem_address st ...
			fields := strings.Fields(line)
			if len(fields) < 4 {
				continue
			}
			if strings.HasSuffix(fields[1], lport) && strings.HasSuffix(fields[2], rport) {
				name, ok := names[fields[3]]
				if !ok {
					name = "state " + fields[3]
				}
				states = append(states, name)
			}
		}
	}
	return states
}

// TestURingTenThousandConns: 10,000 connections held at once (1,000 with
// -short), each echoed, with the same number of goroutines as 10. The
// clients live in a child process: one process may hold only 20,000
// descriptors here.
func TestURingTenThousandConns(t *testing.T) {
	uringOnly(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if uint64(n)+100 > lim.Cur {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, n)
	}
	// The goroutines this test starts, the port's among them, carry its
	// label: runtime.NumGoroutine would count the last tests' goroutines
	// still on their way out.
	id := labelTest(t)
	p := openPort(t, "uring")
	echo(t, p)
	l := listen(t, p, 1)
	if err := l.AcceptMulti(1); err != nil {
		t.Fatal(err)
	}
	// Goroutines of the port with 10 clients, then with n.
	var with10, withN int
	var stacks10, stacksN string
	holdClients(t, l.Addr(), 10, func() {
		eventually(t, "10 conns", func() bool { return p.Conns() == 10 })
		with10, stacks10 = labeledGoroutines(id)
	})
	eventually(t, "the 10 to leave", func() bool { return p.Conns() == 0 })
	holdClients(t, l.Addr(), n, func() {
		eventually(t, fmt.Sprintf("%d conns", n), func() bool { return p.Conns() == n })
		withN, stacksN = labeledGoroutines(id)
	})
	if with10 == 0 {
		t.Fatal("no goroutine carries the test's label: the port's are not counted")
	}
	if withN != with10 {
		t.Errorf("%d goroutines with %d connections, %d with 10; want the same\nwith %d:\n%s\nwith 10:\n%s",
			withN, n, with10, n, stacksN, stacks10)
	}
}

// holdClients starts a child process holding n clients of addr, each of
// which has seen its echo; runs f while they are held; then ends them.
func holdClients(t *testing.T, addr net.Addr, n int, f func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestURingClientHolder$")
	cmd.Env = append(os.Environ(), "CPORT_TEST_HOLD="+addr.String()+","+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "held") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("client holder: %q, %v", line, err)
	}
	f()
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("client holder: %v", err)
	}
}

// TestURingClientHolder is the child of holdClients; it does nothing in a
// normal run.
func TestURingClientHolder(t *testing.T) {
	spec := os.Getenv("CPORT_TEST_HOLD")
	if spec == "" {
		t.Skip("only a child process of TestURingTenThousandConns")
	}
	addr, count, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(count)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, longWait)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		c.Write([]byte{'!'})
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(longWait))
		if _, err := readN(c, 1); err != nil {
			t.Fatalf("client %d: no echo: %v", i, err)
		}
	}
	fmt.Println("held", n)
	os.Stdin.Read(make([]byte, 1)) // until the parent closes our stdin
}

// TestURingFallback: when io_uring_setup is refused with EPERM, as a
// container's seccomp profile or kernel.io_uring_disabled would, "uring" is
// a clear error and "auto" falls back to epoll, saying why in one log line.
func TestURingFallback(t *testing.T) {
	uringOnly(t)
	if !cport.WithoutIOURing(t) {
		return
	}
	_, err := cport.Open(cport.Config{Backend: "uring"})
	if !errors.Is(err, cport.ErrUnavailable) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Open(uring) with setup refused: %v; want ErrUnavailable and EPERM", err)
	}
	var logs syncBuffer
	p, err := cport.Open(cport.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open(auto) with uring refused: %v", err)
	}
	defer p.Close()
	if p.Backend() != "epoll" {
		t.Fatalf("auto chose %s with uring refused; want epoll", p.Backend())
	}
	line := logs.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, "backend=epoll") || !strings.Contains(line, "operation not permitted") {
		t.Errorf("log of the fallback: %q; want one line naming epoll and why uring was passed over", line)
	}
}

// echo runs two workers that send every received chunk back.
func echo(t testing.TB, p *cport.Port) {
	runWorkers(t, p, 2, 16, func(c *cport.Completion) {
		switch c.Op {
		case cport.OpAccept:
			if c.Err == nil {
				c.Conn.RecvMulti(2)
			}
		case cport.OpRecv:
			if c.Err != nil {
				c.Conn.Close()
				return
			}
			m := cport.MsgOf(c.Buf)
			c.Release()
			c.Conn.SendQuiet(m)
			m.Release()
		}
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestURingSmallBufferRingUDP: two receive buffers, datagrams held by the
// owner: the multishot receive runs dry (-ENOBUFS), is counted as starved
// (Stats.Starved), and takes up again as buffers come back, in order.
func TestURingSmallBufferRingUDP(t *testing.T) {
	uringOnly(t)
	p := openPort(t, "uring", cport.Config{RecvBufferSize: 256, RingEntries: 64, RecvBuffers: 2})
	s := collect(t, p, 1)
	pc := listenPacket(t, p, "udp4", "127.0.0.1:0", 1)
	if err := pc.RecvFromMulti(7); err != nil {
		t.Fatal(err)
	}
	cl := udpClient(t, "udp4", "127.0.0.1")
	dst := net.UDPAddrFromAddrPort(udpAddr(t, pc))
	const n = 20
	for i := range n {
		if _, err := cl.WriteToUDP(fmt.Appendf(nil, "datagram %d", i), dst); err != nil {
			t.Fatal(err)
		}
	}
	isRecv := func(c *cport.Completion) bool { return c.Op == cport.OpRecvFrom }
	first := s.take(t, "recvfrom", isRecv) // held: the next ones wait in buffers
	deadline := time.Now().Add(longWait)
	for p.Stats().Starved == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v after %v; want the starved receive counted", p.Stats(), longWait)
		}
		time.Sleep(time.Millisecond)
	}
	got := []string{string(first.Buf[:first.N])}
	first.Release()
	for len(got) < n {
		c := s.take(t, "recvfrom", isRecv)
		if c.Err != nil {
			t.Fatal(c.Err)
		}
		got = append(got, string(c.Buf[:c.N]))
		c.Release()
	}
	for i, g := range got {
		if want := fmt.Sprintf("datagram %d", i); g != want {
			t.Fatalf("datagram %d: %q; want %q", i, g, want)
		}
	}
}

// TestURingSendmsgSmallQueue: a submission queue of 4 against connections
// that each have dozens of distinct messages queued at once, so that their
// sends are sendmsgs of many iovecs whose msghdrs and iovecs (the loop's
// send arena) are reused after every submission: every client reads every
// message, byte for byte and in order. An arena taken back before the
// kernel consumed its entries sends other connections' bytes, or none.
func TestURingSendmsgSmallQueue(t *testing.T) {
	uringOnly(t)
	n, k := 100, 40
	if testing.Short() {
		n = 40
	}
	p := openPort(t, "uring", cport.Config{RingEntries: 4})
	s := collect(t, p, 1)
	conns, clients := acceptN(t, p, s, n)
	want := make([][]byte, n)
	for i, c := range conns {
		var all bytes.Buffer
		for j := range k {
			m := cport.MsgOf(fmt.Appendf(nil, "conn %d message %d %s|", i, j, strings.Repeat("z", (i+j)%17)))
			all.Write(m.Bytes())
			if err := c.SendQuiet(m); err != nil {
				t.Fatal(err)
			}
			m.Release()
		}
		want[i] = all.Bytes()
	}
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			cl.SetReadDeadline(time.Now().Add(longWait))
			got, err := readN(cl, len(want[i]))
			if err != nil || !bytes.Equal(got, want[i]) {
				t.Errorf("client %d read %q, %v; want %q", i, got, err, want[i])
			}
		})
	}
	wg.Wait()
	if st := p.Stats(); st.Writes >= uint64(n*k) {
		t.Errorf("%d writes for %d messages: no send carried more than one", st.Writes, n*k)
	}
}

// TestURingBurstReap: a worker fans messages out to more connections than
// the loop prepares before it reaps (burstSends, 256) while every client
// sends a message of its own, echoed. The loop submits and reaps in the
// middle of its burst, handling receives and sends there: each client
// must read the fan-out in order and its own echo, byte for byte.
func TestURingBurstReap(t *testing.T) {
	uringOnly(t)
	n, k := 600, 4
	if testing.Short() {
		n = 300
	}
	p := openPort(t, "uring")
	var (
		mu    sync.Mutex
		conns []*cport.Conn
	)
	runWorkers(t, p, 2, 16, func(c *cport.Completion) {
		switch c.Op {
		case cport.OpAccept:
			if c.Err == nil {
				mu.Lock()
				conns = append(conns, c.Conn)
				mu.Unlock()
				c.Conn.RecvMulti(2)
			}
		case cport.OpRecv:
			if c.Err != nil {
				c.Conn.Close()
				return
			}
			m := cport.MsgOf(c.Buf)
			c.Release()
			if string(m.Bytes()) != "go|" {
				c.Conn.SendQuiet(m) // an echo
				m.Release()
				return
			}
			m.Release()
			mu.Lock()
			all := conns[:len(conns):len(conns)]
			mu.Unlock()
			for j := range k {
				f := cport.MsgOf(fmt.Appendf(nil, "fan %d|", j))
				for _, conn := range all {
					conn.SendQuiet(f)
				}
				f.Release()
			}
		}
	})
	l := listen(t, p, 1)
	if err := l.AcceptMulti(1); err != nil {
		t.Fatal(err)
	}
	clients := dial(t, l.Addr(), n)
	for deadline := time.Now().Add(longWait); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		got := len(conns)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections accepted", got, n)
		}
	}
	fanLen := 0
	for j := range k {
		fanLen += len(fmt.Sprintf("fan %d|", j))
	}
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			mine := fmt.Sprintf("echo %d|", i)
			if i == 0 {
				mine = "go|" // the fan-out's trigger: not echoed
			}
			if _, err := cl.Write([]byte(mine)); err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			want := fanLen
			if i > 0 {
				want += len(mine)
			}
			got, err := readN(cl, want)
			if err != nil {
				t.Errorf("client %d read %q: %v", i, got, err)
				return
			}
			// The echo may come anywhere among the fan-out's messages,
			// which come in order, each whole.
			rest := string(got)
			if i > 0 {
				at := strings.Index(rest, mine)
				if at < 0 {
					t.Errorf("client %d read %q: no echo %q", i, got, mine)
					return
				}
				rest = rest[:at] + rest[at+len(mine):]
			}
			var fan strings.Builder
			for j := range k {
				fmt.Fprintf(&fan, "fan %d|", j)
			}
			if rest != fan.String() {
				t.Errorf("client %d read %q; want the fan-out %q and its echo", i, got, fan.String())
			}
		})
	}
	wg.Wait()
}
