package cport_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

var abstractSeq atomic.Int64

// TestConformanceDialUnixAbstract: a Unix socket in Linux's abstract
// namespace ("@name", no file), dialed on every Linux engine.
func TestConformanceDialUnixAbstract(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		// Unique on the machine: this process's, then the test's number.
		name := "@cport-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(abstractSeq.Add(1), 10)
		ln, err := net.Listen("unix", name)
		if err != nil {
			t.Fatalf("net.Listen(unix, %s): %v", name, err)
		}
		t.Cleanup(func() { ln.Close() })
		ch := acceptNet(t, ln)
		conn := dialOK(t, p, s, "unix", name, 4, 44)
		if ra, ok := conn.RemoteAddr().(*net.UnixAddr); !ok || ra.Name != name {
			t.Errorf("RemoteAddr = %#v; want the *net.UnixAddr %q", conn.RemoteAddr(), name)
		}
		exchangeNet(t, s, conn, takeNet(t, ch))
	})
}

// TestConformanceDialTimeoutCloses: a dial that timed out leaves no socket
// of its own behind: the kernel's table shows the connects in SYN-SENT
// while they wait, and none once their timeout has ended them.
func TestConformanceDialTimeoutCloses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		stuck := fullListener(t)
		_, port, _ := net.SplitHostPort(stuck)
		const n = 4
		for i := range n {
			if err := p.DialTimeout("tcp", stuck, 3*time.Second, 1, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "the connects to wait in SYN-SENT", func() bool { return synSent(t, port) == n })
		for range n {
			c := s.take(t, "a timed-out dial", isOp(cport.OpDial))
			if !errors.Is(c.Err, os.ErrDeadlineExceeded) {
				t.Errorf("dial: %s; want os.ErrDeadlineExceeded", describe(&c))
			}
		}
		eventually(t, "no socket left connecting", func() bool { return synSent(t, port) == 0 })
	})
}

// synSent counts the IPv4 sockets in SYN-SENT to port on 127.0.0.1.
func synSent(t *testing.T, port string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	pn, _ := strconv.Atoi(port)
	want := fmt.Sprintf("0100007F:%04X", pn)
	k := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == want && f[3] == "02" {
			k++
		}
	}
	return k
}

// TestConformanceListenUnixAbstract: Port.Listen of a Unix socket in
// Linux's abstract namespace (no file): a client of Go's net connects and
// moves bytes both ways.
func TestConformanceListenUnixAbstract(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		name := "@cport-test-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(abstractSeq.Add(1), 10)
		l, err := p.Listen("unix", name, 79)
		if err != nil {
			t.Fatalf("Listen(unix, %s): %v", name, err)
		}
		t.Cleanup(func() { l.Close() })
		conn, peer := acceptAdopted(t, s, l, dialUnix(t, name))
		exchangeNet(t, s, conn, peer)
	})
}
