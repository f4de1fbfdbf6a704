package cport_test

import (
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
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
