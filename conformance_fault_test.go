package cport_test

// Faults: every system call an engine issues for a socket is made to fail,
// with each errno it can return, through engine.Faults (cport.WithFaults).
// The port must go on serving the other connections, end only the
// connection the failure hit (with an error that names the errno), and
// leak nothing: descriptors, goroutines and Conns() come back to where
// they were.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/internal/engine"
)

// faultErrno is one errno a call can fail with, and what it does to the
// connection the failed call was for.
type faultErrno struct {
	errno syscall.Errno
	fatal bool // it ends that connection; else it is retried or skipped and nobody notices
}

// The errnos of each call. EAGAIN is not among them: a poller waits for
// readiness after it, and an EAGAIN the kernel did not mean would leave an
// edge-triggered poller waiting for an edge that already came; the real
// one is met by every test that fills a socket's buffer.
var (
	acceptErrnos = []faultErrno{
		// Transient: retried or skipped.
		{syscall.EINTR, false}, {syscall.ECONNABORTED, false},
		{syscall.EPROTO, false}, {syscall.EPERM, false},
		// Out of resources: accepting pauses, then goes on.
		{syscall.EMFILE, false}, {syscall.ENFILE, false}, {syscall.ENOBUFS, false}, {syscall.ENOMEM, false},
	}
	recvErrnos = []faultErrno{
		{syscall.EINTR, false},
		{syscall.ECONNRESET, true}, {syscall.ETIMEDOUT, true}, {syscall.ENOMEM, true},
	}
	sendErrnos = []faultErrno{
		{syscall.EINTR, false},
		{syscall.EPIPE, true}, {syscall.ECONNRESET, true}, {syscall.ENOBUFS, true}, {syscall.ENOMEM, true},
	}
	shutdownErrnos = []faultErrno{{syscall.ENOTCONN, true}, {syscall.ENOBUFS, true}}
	closeErrnos    = []faultErrno{{syscall.EINTR, false}, {syscall.EIO, false}}
)

// pollErrnos returns the errnos of backend b's CallPoll, or nil when it
// issues none: registering a new socket (epoll_ctl, the IOCP association)
// fails for that connection alone; entering the ring (io_uring_enter) is
// retried.
func pollErrnos(b string) []faultErrno {
	switch b {
	case "epoll", "iocp":
		return []faultErrno{{syscall.ENOMEM, true}, {syscall.ENOSPC, true}}
	case "uring":
		return []faultErrno{{syscall.EINTR, false}, {syscall.EAGAIN, false}, {syscall.EBUSY, false}}
	}
	return nil
}

// faultServer is an echo server on a port whose engine fails on demand.
// Every message a client sends comes back; a message that starts with 'W'
// also shuts the writing side down once its echo is written (CloseWrite).
// A connection whose receive or send fails is closed, and its error kept.
type faultServer struct {
	p      *cport.Port
	l      *cport.Listener
	faults *engine.Faults

	mu         sync.Mutex
	ended      map[string]error // a client's address -> the error its connection ended with (io.EOF: the client's close)
	acceptErrs []error          // accept completions that failed
}

func startFaultServer(t *testing.T, b string) *faultServer {
	t.Helper()
	fs := &faultServer{faults: new(engine.Faults), ended: make(map[string]error)}
	fs.p = openPort(t, b, cport.WithFaults(cport.Config{}, fs.faults))
	fs.l = listen(t, fs.p, 1)
	runWorkers(t, fs.p, 2, 8, fs.handle)
	if err := fs.l.AcceptMulti(1); err != nil {
		t.Fatalf("AcceptMulti: %v", err)
	}
	return fs
}

func (fs *faultServer) handle(c *cport.Completion) {
	switch c.Op {
	case cport.OpAccept:
		if c.Err != nil {
			fs.mu.Lock()
			fs.acceptErrs = append(fs.acceptErrs, c.Err)
			fs.mu.Unlock()
			return
		}
		if err := c.Conn.RecvMulti(1); err != nil {
			fs.end(c.Conn, err)
		}
	case cport.OpRecv:
		if c.Err != nil {
			fs.end(c.Conn, c.Err)
			return
		}
		m := cport.MsgOf(c.Buf)
		err := c.Conn.Send(m, 2)
		m.Release()
		if err == nil && c.Buf[0] == 'W' {
			err = c.Conn.CloseWrite()
		}
		c.Release()
		if err != nil {
			fs.end(c.Conn, err)
		}
	case cport.OpSend:
		if c.Err != nil {
			fs.end(c.Conn, c.Err)
		}
	}
}

// end records the first error a connection ended with, and closes it.
func (fs *faultServer) end(conn *cport.Conn, err error) {
	fs.mu.Lock()
	if _, ok := fs.ended[conn.RemoteAddr().String()]; !ok {
		fs.ended[conn.RemoteAddr().String()] = err
	}
	fs.mu.Unlock()
	conn.Close()
}

// endedWith returns the error client cl's connection ended with, if it did.
func (fs *faultServer) endedWith(cl net.Conn) (error, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	err, ok := fs.ended[cl.LocalAddr().String()]
	return err, ok
}

// echoOnce sends msg on cl and reads it back.
func echoOnce(cl net.Conn, msg string) error {
	if _, err := cl.Write([]byte(msg)); err != nil {
		return err
	}
	got, err := readN(cl, len(msg))
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q; want %q", got, msg)
	}
	return nil
}

// mustEcho fails t unless every client echoes.
func mustEcho(t *testing.T, clients []*net.TCPConn, what string) {
	t.Helper()
	for i, cl := range clients {
		if err := echoOnce(cl, fmt.Sprintf("%s %d\n", what, i)); err != nil {
			t.Fatalf("%s: client %d: %v", what, i, err)
		}
	}
}

// readsEnd waits for cl's stream to end (an end of stream or a reset),
// after any bytes still to come.
func readsEnd(t *testing.T, cl net.Conn, what string) {
	t.Helper()
	cl.SetReadDeadline(time.Now().Add(longWait))
	_, err := io.Copy(io.Discard, cl)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the client's stream did not end within %v", what, longWait)
	}
}

// faultCase runs body on a fresh fault server for every errno of a call,
// on every backend, one at a time (descriptors are counted process-wide),
// and checks that the injection was reached and that nothing leaked.
func faultCase(t *testing.T, call engine.Call, errnos func(b string) []faultErrno,
	body func(t *testing.T, fs *faultServer, e faultErrno)) {
	forEachBackendSerial(t, func(t *testing.T, b string) {
		list := errnos(b)
		if len(list) == 0 {
			t.Skipf("backend %s issues no %s call", b, call)
		}
		for _, e := range list {
			t.Run(e.errno.Error(), func(t *testing.T) {
				labelTest(t)
				fds := openFDs(t)
				t.Run("serve", func(t *testing.T) {
					labelTest(t)
					fs := startFaultServer(t, b)
					body(t, fs, e)
					if fs.faults.Hits(call) == 0 {
						t.Fatalf("no %s call failed: the engine does not consult Faults for it", call)
					}
				})
				// The port, its listener and the clients are closed.
				waitFor(t, "the descriptors to come back", func() (bool, string) {
					n := openFDs(t)
					return n <= fds, fmt.Sprintf("%d open; %d before", n, fds)
				})
			})
		}
	})
}

func sameErrnos(list []faultErrno) func(string) []faultErrno {
	return func(string) []faultErrno { return list }
}

// connsSettle waits for the port to hold exactly want connections.
func connsSettle(t *testing.T, p *cport.Port, want int) {
	t.Helper()
	waitFor(t, "Conns() to settle", func() (bool, string) {
		n := p.Conns()
		return n == want, fmt.Sprintf("Conns() = %d; want %d", n, want)
	})
}

// TestConformanceFaultAccept: an accept that fails, transiently or for
// want of resources, delays no client for good: accepting goes on, and a
// client whose connection the failure cost (io_uring had accepted it) sees
// its stream end, never a hang.
func TestConformanceFaultAccept(t *testing.T) {
	faultCase(t, engine.CallAccept, sameErrnos(acceptErrnos), func(t *testing.T, fs *faultServer, e faultErrno) {
		fs.faults.Arm(engine.CallAccept, e.errno, 2)
		clients := dial(t, fs.l.Addr(), 4)
		var served []*net.TCPConn
		for i, cl := range clients {
			if err := echoOnce(cl, fmt.Sprintf("hello %d\n", i)); err != nil {
				if fs.faults.Hits(engine.CallAccept) == 0 {
					t.Fatalf("client %d: %v, and no accept failed", i, err)
				}
				continue // its connection was accepted and closed by the failure
			}
			served = append(served, cl)
		}
		if lost := len(clients) - len(served); int64(lost) > fs.faults.Hits(engine.CallAccept) {
			t.Fatalf("%d clients lost for %d failed accepts", lost, fs.faults.Hits(engine.CallAccept))
		}
		fs.mu.Lock()
		for _, err := range fs.acceptErrs {
			if !errors.Is(err, e.errno) {
				t.Errorf("accept completion error %v; want one matching %v", err, e.errno)
			}
		}
		fs.mu.Unlock()
		more := dial(t, fs.l.Addr(), 2)
		mustEcho(t, more, "after")
		mustEcho(t, served, "again")
		connsSettle(t, fs.p, len(served)+len(more))
	})
}

// TestConformanceFaultRecv: a receive that fails ends that connection
// alone, with the errno; a transient failure is retried unseen.
func TestConformanceFaultRecv(t *testing.T) {
	faultCase(t, engine.CallRecv, sameErrnos(recvErrnos), func(t *testing.T, fs *faultServer, e faultErrno) {
		victimFault(t, fs, engine.CallRecv, e)
	})
}

// TestConformanceFaultSend: a write that fails breaks that connection
// alone: its send completes with the errno and its receive ends; a
// transient failure is retried unseen.
func TestConformanceFaultSend(t *testing.T) {
	faultCase(t, engine.CallSend, sameErrnos(sendErrnos), func(t *testing.T, fs *faultServer, e faultErrno) {
		victimFault(t, fs, engine.CallSend, e)
	})
}

// victimFault connects four clients that echo, arms call to fail once
// with e, and has client 0 send a message, which makes the armed call
// happen (for client 0, or for another connection whose read or write was
// due); then, for a fatal errno, exactly one connection ends with an error
// matching it and its client's stream ends; every other client echoes.
func victimFault(t *testing.T, fs *faultServer, call engine.Call, e faultErrno) {
	t.Helper()
	clients := dial(t, fs.l.Addr(), 4)
	mustEcho(t, clients, "before")
	connsSettle(t, fs.p, 4)
	fs.faults.Arm(call, e.errno, 1)
	mustWrite(t, clients[0], []byte("trigger\n"))
	eventually(t, "the armed call to fail", func() bool { return fs.faults.Hits(call) == 1 })
	if !e.fatal {
		if got := mustReadN(t, clients[0], len("trigger\n")); string(got) != "trigger\n" {
			t.Fatalf("echo %q; want %q", got, "trigger\n")
		}
		mustEcho(t, clients, "after")
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if len(fs.ended) > 0 {
			t.Fatalf("connections ended after a transient %v: %v", e.errno, fs.ended)
		}
		return
	}
	var victim int
	eventually(t, "a connection to end with the error", func() bool {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return len(fs.ended) > 0
	})
	victim = -1
	for i, cl := range clients {
		if err, ok := fs.endedWith(cl); ok {
			if victim >= 0 {
				t.Fatalf("clients %d and %d both ended after one failed %s", victim, i, call)
			}
			victim = i
			if !errors.Is(err, e.errno) {
				t.Errorf("the connection ended with %v; want an error matching %v", err, e.errno)
			}
		}
	}
	readsEnd(t, clients[victim], "the victim")
	var rest []*net.TCPConn
	for i, cl := range clients {
		if i != victim {
			rest = append(rest, cl)
		}
	}
	if victim != 0 {
		// Client 0's message was echoed (or is on its way).
		if got := mustReadN(t, clients[0], len("trigger\n")); string(got) != "trigger\n" {
			t.Fatalf("echo %q; want %q", got, "trigger\n")
		}
	}
	mustEcho(t, rest, "after")
	connsSettle(t, fs.p, len(rest))
}

// TestConformanceFaultShutdown: a write-side shutdown that fails leaves no
// peer waiting for an end of stream that never comes: the connection ends.
func TestConformanceFaultShutdown(t *testing.T) {
	faultCase(t, engine.CallShutdown, sameErrnos(shutdownErrnos), func(t *testing.T, fs *faultServer, e faultErrno) {
		clients := dial(t, fs.l.Addr(), 3)
		mustEcho(t, clients, "before")
		fs.faults.Arm(engine.CallShutdown, e.errno, 1)
		mustWrite(t, clients[0], []byte("W, then shut down\n"))
		readsEnd(t, clients[0], "the client whose shutdown failed")
		mustEcho(t, clients[1:], "after")
		clients[0].Close()
		connsSettle(t, fs.p, 2)
	})
}

// TestConformanceFaultClose: a close that reports an error still closes
// (the descriptor is gone either way, and never closed twice): nothing
// leaks, the other connections go on.
func TestConformanceFaultClose(t *testing.T) {
	faultCase(t, engine.CallClose, sameErrnos(closeErrnos), func(t *testing.T, fs *faultServer, e faultErrno) {
		clients := dial(t, fs.l.Addr(), 3)
		mustEcho(t, clients, "before")
		connsSettle(t, fs.p, 3)
		fs.faults.Arm(engine.CallClose, e.errno, 1)
		clients[0].Close() // the server closes its side on the end of stream
		eventually(t, "the armed close", func() bool { return fs.faults.Hits(engine.CallClose) == 1 })
		connsSettle(t, fs.p, 2)
		mustEcho(t, clients[1:], "after")
		// A descriptor number the failed close freed is reused at once:
		// new connections must work on it.
		more := dial(t, fs.l.Addr(), 2)
		mustEcho(t, more, "new")
	})
}

// TestConformanceFaultPoll: registering a new socket with the poller
// fails for that connection alone (its client's stream ends, accepting
// goes on); entering the ring fails transiently and is retried.
func TestConformanceFaultPoll(t *testing.T) {
	faultCase(t, engine.CallPoll, pollErrnos, func(t *testing.T, fs *faultServer, e faultErrno) {
		clients := dial(t, fs.l.Addr(), 3)
		mustEcho(t, clients, "before")
		fs.faults.Arm(engine.CallPoll, e.errno, 1)
		victim := dialOne(t, fs.l.Addr())
		if e.fatal {
			readsEnd(t, victim, "the client whose registration failed")
			eventually(t, "the armed call to fail", func() bool { return fs.faults.Hits(engine.CallPoll) == 1 })
		} else {
			mustEcho(t, []*net.TCPConn{victim}, "victim")
			// A ring is entered on its own schedule: make sure the
			// armed enter happened and was retried.
			eventually(t, "the armed enter", func() bool {
				mustEcho(t, clients, "poke")
				return fs.faults.Hits(engine.CallPoll) > 0
			})
			clients = append(clients, victim)
		}
		mustEcho(t, clients, "after")
		more := dialOne(t, fs.l.Addr())
		mustEcho(t, []*net.TCPConn{more}, "later")
		connsSettle(t, fs.p, len(clients)+1)
	})
}
