//go:build linux

package cport_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
)

// holdFDsUpTo duplicates descriptors until the next one would be at least
// limit, and closes them at the end of the test.
func holdFDsUpTo(t *testing.T, limit int) {
	t.Helper()
	var held []int
	t.Cleanup(func() {
		for _, fd := range held {
			syscall.Close(fd)
		}
	})
	for {
		fd, err := syscall.Dup(2)
		if err != nil {
			t.Fatal(err)
		}
		if fd >= limit-1 {
			held = append(held, fd)
			return
		}
		held = append(held, fd)
	}
}

// TestSelectPastFDSetSize: select cannot watch a descriptor past
// FD_SETSIZE: an accepted connection numbered 1024 or more is closed and
// reported as a failed accept wrapping ErrUnsupported, accepting goes on;
// a listener numbered so fails to open.
func TestSelectPastFDSetSize(t *testing.T) {
	p, err := cport.Open(cport.Config{Backend: "select"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	l, err := p.Listen("tcp4", "127.0.0.1:0", 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AcceptMulti(1); err != nil {
		t.Fatal(err)
	}
	holdFDsUpTo(t, 1024) // the next descriptor is 1024

	w := p.Worker()
	defer w.Close()
	c, comp := dialAccept(t, l, w)
	if comp.Op != cport.OpAccept || comp.Err == nil || comp.Conn != nil {
		t.Fatalf("completion %v %v %v; want a failed accept", comp.Op, comp.Err, comp.Conn)
	}
	if !errors.Is(comp.Err, cport.ErrUnsupported) || !strings.Contains(comp.Err.Error(), "past FD_SETSIZE (1024)") {
		t.Errorf("accept error %q; want ErrUnsupported naming FD_SETSIZE", comp.Err)
	}
	// The client sees its connection closed.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read on a refused connection succeeded")
	}

	_, err = p.Listen("tcp4", "127.0.0.1:0", 8)
	if !errors.Is(err, cport.ErrUnsupported) || !strings.Contains(err.Error(), "FD_SETSIZE") {
		t.Errorf("Listen past FD_SETSIZE: %v; want ErrUnsupported naming FD_SETSIZE", err)
	}
}
