//go:build linux

package cport_test

import (
	"errors"
	"syscall"
	"testing"

	"cport.dev/cport"
)

// TestConformanceAcceptEMFILE: an accept that fails for want of file
// descriptors completes with the error (an *OpError of Op "accept"
// matching EMFILE), and AcceptMulti goes on: once descriptors are free, the
// waiting clients are accepted.
//
// It lowers the process's descriptor limit for a moment, so it runs one
// backend at a time, and no other test runs meanwhile (top-level tests of
// this suite are not parallel).
func TestConformanceAcceptEMFILE(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, b string) {
		const n = 3
		p := openPort(t, b)
		s := collect(t, p, 1)
		l := listen(t, p, 4)
		dial(t, l.Addr(), n) // the clients wait in the listen backlog

		var old syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Skipf("Getrlimit: %v", err)
		}
		restore := func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restoring RLIMIT_NOFILE: %v", err)
			}
		}
		t.Cleanup(restore)
		// The lowest free descriptor number becomes the limit: no new
		// descriptor can be made.
		fd, err := syscall.Dup(2)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
		low := old
		low.Cur = uint64(fd)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
			t.Skipf("Setrlimit: %v", err)
		}
		if err := l.AcceptMulti(5); err != nil {
			restore()
			t.Fatalf("AcceptMulti with no descriptor left: %v", err)
		}
		c := s.take(t, "failed accept", isOp(cport.OpAccept))
		restore()
		if c.Err == nil {
			c.Conn.Close()
			t.Fatalf("accept with no descriptor left succeeded (limit %d)", low.Cur)
		}
		if !errors.Is(c.Err, syscall.EMFILE) && !errors.Is(c.Err, syscall.ENFILE) {
			t.Errorf("accept error %v; want EMFILE", c.Err)
		}
		var oe *cport.OpError
		if !errors.As(c.Err, &oe) || oe.Op != "accept" || oe.Backend != b {
			t.Errorf("accept error %v (%T); want an *OpError with Op accept and Backend %s", c.Err, c.Err, b)
		}
		if c.Conn != nil || c.Tag != 5 || c.Key != 4 || c.Listener != l {
			t.Errorf("failed accept completion %s; want tag 5 key 4, the listener, no conn", describe(&c))
		}
		// Accepting goes on.
		for accepted := 0; accepted < n; {
			c := s.take(t, "accept once descriptors are free", isOp(cport.OpAccept))
			switch {
			case c.Err == nil:
				c.Conn.Close()
				accepted++
			case errors.Is(c.Err, syscall.EMFILE):
				// Reported before the limit was restored.
			default:
				t.Fatalf("accept completion %s", describe(&c))
			}
		}
	})
}
