package readiness

import (
	"context"
	"fmt"
	"log"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

// events is what a waiter watches a descriptor for, and reports it ready
// for.
type events uint8

const (
	readable events = 1 << iota // input, end of stream or an error to read
	writable                    // room to write, or an error to write
)

// A ready is one descriptor a wait reported, with what it is ready for.
type ready struct {
	fd int
	ev events
}

// A waiter is the one thing the select and poll models do differently:
// how they wait for readiness (selectWaiter, pollWaiter). The rest of the
// server is common to both.
type waiter interface {
	// watch watches fd for ev from the next wait on; ev 0 stops watching
	// it. It fails if the model cannot watch fd at all.
	watch(fd int, ev events) error
	// wait blocks until a watched descriptor is ready or timeout
	// milliseconds pass (-1: no limit), and appends the ready ones to rd.
	wait(rd []ready, timeout int) ([]ready, error)
}

const (
	backlog     = 1<<16 - 1 // listen(2) caps it at net.core.somaxconn
	readSize    = 64 << 10
	acceptPause = 100 * time.Millisecond // after EMFILE and the like
)

// Serve runs the echo server of model ("select" or "poll") on addr (TCP
// over IPv4) until ctx ends: every byte a client sends is written back to
// it. ready is called with the listening address once it accepts. A
// connection the model cannot watch (select past FD_SETSIZE) is closed at
// once, and failed accepts are logged, each kind once, to lg; accepting goes
// on.
//
// Serve runs the loop on the calling goroutine, locked to its OS thread: the
// model's one thread.
func Serve(ctx context.Context, model, addr string, lg *log.Logger, ready func(addr string)) error {
	var w waiter
	switch model {
	case "select":
		w = newSelectWaiter()
	case "poll":
		w = newPollWaiter()
	default:
		return fmt.Errorf("readiness: no %q model (have select, poll)", model)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	s := &server{model: model, w: w, lg: lg, buf: make([]byte, readSize), logged: map[string]bool{}}
	lfd, bound, err := sockopt.Listen("tcp4", addr, backlog)
	if err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	defer unix.Close(lfd)
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%s: %w", model, os.NewSyscallError("eventfd", err))
	}
	defer unix.Close(wfd)
	s.lfd, s.wakefd = lfd, wfd
	if err := w.watch(lfd, readable); err != nil {
		return err
	}
	if err := w.watch(wfd, readable); err != nil {
		return err
	}
	// ctx's end wakes the loop through wfd, so that an idle loop blocks
	// with no timeout at all.
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		unix.Write(wfd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		close(woken)
	})
	defer func() {
		if !stop() {
			<-woken // wfd stays open until the write is done
		}
	}()
	defer s.closeAll()

	ready(bound.String())
	return s.loop()
}

// server is the readiness model's one thread and everything it owns: the
// listening socket, the connections by descriptor, one read buffer. Each
// wake-up it handles what the waiter reports ready, so its own work per
// wake-up is proportional to the descriptors ready; the O(n) in the
// descriptors watched is the waiter's (and the kernel's) walk.
type server struct {
	model  string
	w      waiter
	lg     *log.Logger
	lfd    int     // the listening socket
	wakefd int     // an eventfd written when ctx ends
	conns  []*conn // by descriptor; nil: not a connection
	buf    []byte  // what one read reads into
	rd     []ready // the last wait's
	resume time.Time
	logged map[string]bool // failures logged, by kind
}

// conn is one connection: its descriptor and the echoes not yet written.
// An idle connection costs its kernel socket and these few words.
type conn struct {
	fd int
	// out holds what was read but not yet written back. While it is not
	// empty the connection is watched for output only: nothing more is read
	// from a client until it has taken its echoes.
	out []byte
}

func (s *server) loop() error {
	for {
		timeout := -1
		if !s.resume.IsZero() {
			timeout = max(0, int(time.Until(s.resume).Milliseconds())+1)
		}
		var err error
		s.rd, err = s.w.wait(s.rd[:0], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError(s.model, err)
		}
		if !s.resume.IsZero() && !time.Now().Before(s.resume) {
			s.resumeAccepting()
		}
		for _, r := range s.rd {
			switch {
			case r.fd == s.wakefd:
				return nil
			case r.fd == s.lfd:
				s.acceptAll()
			case r.fd < len(s.conns) && s.conns[r.fd] != nil:
				s.serve(s.conns[r.fd], r.ev)
			}
		}
	}
}

// acceptAll accepts until the backlog is empty.
func (s *server) acceptAll() {
	for {
		fd, _, err := unix.Accept4(s.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default: // EMFILE, ENFILE, ENOBUFS, ENOMEM...: stop watching the listener for a while
			s.logOnce(err.Error(), "%s: %v: accepting paused for %v", s.model, os.NewSyscallError("accept4", err), acceptPause)
			s.w.watch(s.lfd, 0)
			s.resume = time.Now().Add(acceptPause)
			return
		}
		if err := s.w.watch(fd, readable); err != nil {
			unix.Close(fd)
			s.logOnce("unwatchable", "accept: %v: connection closed", err)
			continue
		}
		sockopt.SetNoDelay(fd)
		if fd >= len(s.conns) {
			s.conns = append(s.conns, make([]*conn, fd+1-len(s.conns))...)
		}
		s.conns[fd] = &conn{fd: fd}
	}
}

func (s *server) resumeAccepting() {
	s.resume = time.Time{}
	s.w.watch(s.lfd, readable)
}

// serve handles c's readiness. While c has echoes left to write it writes
// them; else it reads once and writes back what it read, keeping in c.out
// what the socket did not take.
func (s *server) serve(c *conn, ev events) {
	if len(c.out) > 0 {
		if ev&writable == 0 {
			return
		}
		n, err := write(c.fd, c.out)
		if err != nil {
			s.close(c)
			return
		}
		if c.out = c.out[n:]; len(c.out) == 0 {
			c.out = nil
			s.w.watch(c.fd, readable)
		}
		return
	}
	if ev&readable == 0 {
		return
	}
	n, err := unix.Read(c.fd, s.buf)
	for err == unix.EINTR {
		n, err = unix.Read(c.fd, s.buf)
	}
	switch {
	case n > 0:
		m, err := write(c.fd, s.buf[:n])
		if err != nil {
			s.close(c)
		} else if m < n {
			c.out = append([]byte(nil), s.buf[m:n]...)
			s.w.watch(c.fd, writable)
		}
	case err == unix.EAGAIN:
	default: // end of stream, or an error
		s.close(c)
	}
}

// write writes p to fd until fd takes no more and returns how much it took.
func write(fd int, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(fd, p[n:])
		switch err {
		case nil:
			n += m
		case unix.EINTR:
		case unix.EAGAIN:
			return n, nil
		default:
			return n, err
		}
	}
	return n, nil
}

func (s *server) close(c *conn) {
	s.w.watch(c.fd, 0)
	unix.Close(c.fd)
	s.conns[c.fd] = nil
	if !s.resume.IsZero() {
		s.resumeAccepting() // a descriptor is free
	}
}

func (s *server) closeAll() {
	for _, c := range s.conns {
		if c != nil {
			s.close(c)
		}
	}
}

// logOnce logs a failure of the given kind the first time only.
func (s *server) logOnce(kind, format string, args ...any) {
	if s.logged[kind] {
		return
	}
	s.logged[kind] = true
	s.lg.Printf(format+" (logged once)", args...)
}
