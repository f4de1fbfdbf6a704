package readiness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// patience bounds every wait of these tests: long, for a loaded machine.
const patience = 30 * time.Second

// logBuffer collects a server's log.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// serve starts the server of model and returns its address and log; the
// server stops at the end of the test, where Serve must return nil.
func serve(t *testing.T, model string) (string, *logBuffer) {
	t.Helper()
	addr, logs, err := start(t, model)
	if err != nil {
		t.Fatal(err)
	}
	return addr, logs
}

// start starts the server of model; err is Serve's if it returns before it
// accepts.
func start(t *testing.T, model string) (string, *logBuffer, error) {
	t.Helper()
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, model, "127.0.0.1:0", log.New(logs, "", 0), func(a string) { addrc <- a })
	}()
	select {
	case a := <-addrc:
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(patience):
				t.Errorf("Serve did not return after its context ended")
			}
		})
		return a, logs, nil
	case err := <-errc:
		cancel()
		return "", logs, err
	case <-time.After(patience):
		cancel()
		t.Fatal("the server did not start")
		return "", nil, nil
	}
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(patience))
	return c.(*net.TCPConn)
}

// echoes checks that what c sends comes back.
func echoes(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// closedByServer checks that the server closed c.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	n, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection the server should close: %d, %v", n, err)
	}
}

// holdFDsUpTo takes descriptors until the next one this process opens is
// limit, and gives them back at the end of the test (or when release is
// called).
func holdFDsUpTo(t *testing.T, limit int) (release func()) {
	t.Helper()
	var held []int
	release = func() {
		for _, fd := range held {
			syscall.Close(fd)
		}
		held = nil
	}
	t.Cleanup(release)
	for {
		fd, err := syscall.Dup(2)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, fd)
		if fd >= limit-1 {
			return release
		}
	}
}

var models = []string{"select", "poll"}

// TestEcho: several clients at once each get their own bytes back, and a
// client's end of stream closes its connection.
func TestEcho(t *testing.T) {
	for _, m := range models {
		t.Run(m, func(t *testing.T) {
			addr, logs := serve(t, m)
			var cs []*net.TCPConn
			for range 20 {
				cs = append(cs, dial(t, addr))
			}
			for round := range 3 {
				for i, c := range cs {
					echoes(t, c, strings.Repeat(string(rune('a'+i)), 1+round*100))
				}
			}
			c := cs[0]
			c.CloseWrite()
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after CloseWrite: %d, %v; want EOF", n, err)
			}
			echoes(t, cs[1], "still here")
			if s := logs.String(); s != "" {
				t.Errorf("log: %s", s)
			}
		})
	}
}

// TestEchoSlowReader: a client that sends much more than the sockets hold
// before reading its echoes gets every byte back in order: the server keeps
// what the socket does not take and stops reading from that client until it
// is written.
func TestEchoSlowReader(t *testing.T) {
	const size = 8 << 20
	for _, m := range models {
		t.Run(m, func(t *testing.T) {
			addr, _ := serve(t, m)
			// A small receive buffer, set before the handshake so that the
			// window is small from the start: the server's writes come up
			// short.
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var err error
				rc.Control(func(fd uintptr) {
					err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
				})
				return err
			}}
			nc, err := d.Dial("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			c := nc.(*net.TCPConn)
			c.SetDeadline(time.Now().Add(patience))
			other := dial(t, addr)
			sent := make([]byte, size)
			for i := range sent {
				sent[i] = byte(i % 251)
			}
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(sent)
				werr <- err
			}()
			// The server serves others while this client's echoes wait.
			echoes(t, other, "hello")
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, sent) {
				t.Fatal("the echo differs from what was sent")
			}
		})
	}
}

// TestServeStops: Serve returns once its context ends, and the clients
// see their connections closed.
func TestServeStops(t *testing.T) {
	for _, m := range models {
		t.Run(m, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			addrc := make(chan string, 1)
			errc := make(chan error, 1)
			go func() {
				errc <- Serve(ctx, m, "127.0.0.1:0", log.New(io.Discard, "", 0), func(a string) { addrc <- a })
			}()
			c := dial(t, <-addrc)
			echoes(t, c, "x")
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(patience):
				t.Fatal("Serve did not return")
			}
			closedByServer(t, c)
		})
	}
}

func TestServeUnknownModel(t *testing.T) {
	err := Serve(context.Background(), "kqueue", "127.0.0.1:0", log.New(io.Discard, "", 0), func(string) {})
	if err == nil || !strings.Contains(err.Error(), "kqueue") {
		t.Fatalf("err = %v; want one naming the model", err)
	}
}

// TestSelectPastFDSetSize: the select server cannot watch a descriptor
// numbered FD_SETSIZE (1024) or more: such a connection is closed at once
// and the refusal is logged once, naming FD_SETSIZE; serving goes on. A
// listening socket numbered so fails Serve.
func TestSelectPastFDSetSize(t *testing.T) {
	addr, logs := serve(t, "select")
	below := dial(t, addr)
	echoes(t, below, "below")
	release := holdFDsUpTo(t, fdSetSize) // the client takes 1024, the server 1025

	for range 2 {
		closedByServer(t, dial(t, addr))
	}
	const want = "past FD_SETSIZE (1024): the select model cannot watch it: connection closed (logged once)"
	if s := logs.String(); !strings.Contains(s, want) || strings.Count(s, "\n") != 1 {
		t.Errorf("log %q; want one line with %q", s, want)
	}
	echoes(t, below, "still served")

	if _, _, err := start(t, "select"); err == nil || !strings.Contains(err.Error(), "past FD_SETSIZE (1024)") {
		t.Errorf("Serve with its listening socket past FD_SETSIZE: %v; want an error naming FD_SETSIZE", err)
	}

	release()
	echoes(t, dial(t, addr), "below again")
}

// TestPollPastFDSetSize: poll, unlike select, watches descriptors past
// FD_SETSIZE, the listening socket's and the connections'.
func TestPollPastFDSetSize(t *testing.T) {
	holdFDsUpTo(t, 1100)
	addr, _ := serve(t, "poll")
	for range 3 {
		echoes(t, dial(t, addr), "hello")
	}
}
