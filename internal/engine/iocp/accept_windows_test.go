package iocp

import (
	"errors"
	"log/slog"
	"net"
	"testing"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
)

// pausingListener accepts on and on and goes on after every failure but
// the last, as package cport does.
type pausingListener struct {
	fakeListener
	finals chan error
}

func (l *pausingListener) AcceptState() (want, multi bool) { return true, true }

func (l *pausingListener) Accepted(co engine.ConnOwner) bool {
	co.(*fakeConn).c.Close(true)
	return true
}

func (l *pausingListener) AcceptFailed(err error, final bool) bool {
	if final {
		l.finals <- err
		return false
	}
	l.errs <- err
	return true
}

// TestPausedAcceptEndsOnClose: an accept paused for want of sockets (its
// retry waits on a timer, with no AcceptEx pending) ends with
// AcceptFailed(ErrCanceled, true) by the time Listener.Close and
// Engine.Close return, and the timer does not call the owner later.
// Before the fix the timer was not stopped: the accept ended only when it
// fired, after Engine.Close.
func TestPausedAcceptEndsOnClose(t *testing.T) {
	faults := &engine.Faults{}
	be, err := Open(engine.Config{
		Port:           fakePort{},
		Logger:         slog.New(slog.DiscardHandler),
		Concurrency:    1,
		RecvBufferSize: 4096,
		Faults:         faults,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := be.(*eng)
	lo := &pausingListener{
		fakeListener: fakeListener{conns: make(chan *fakeConn, 1), errs: make(chan error, 64)},
		finals:       make(chan error, 4),
	}
	l, err := e.Listen("tcp", "127.0.0.1:0", lo)
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	// Nine failures in a row take the pause to its longest (1 s): the
	// timer is then almost surely waiting when the listener is closed.
	const fails = 9
	faults.Arm(engine.CallAccept, windows.WSAENOBUFS, fails)
	l.Accept()
	for i := range fails {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		if err := within(t, lo.errs, "accept failure"); !errors.Is(err, windows.WSAENOBUFS) {
			t.Fatalf("accept failure %d: %v; want WSAENOBUFS", i, err)
		}
	}
	l.Close()
	e.Close()
	select {
	case err := <-lo.finals:
		if !errors.Is(err, engine.ErrCanceled) {
			t.Errorf("end of the accept: %v; want ErrCanceled", err)
		}
	default:
		t.Fatal("Listener.Close and Engine.Close returned with the paused accept not ended")
	}
	if len(lo.finals) != 0 {
		t.Errorf("the accept ended %d more times", len(lo.finals))
	}
}
