//go:build linux

package cport

// The poll and select engines: the classic readiness models, for the
// models experiment (cmd/cport models, docs/models) only. They are never
// chosen by "auto" (rankNever).
//
// # The loop
//
// One goroutine (the loop) owns every socket of the port. Each round it
// builds the set of descriptors it watches from scratch, walking every
// registered connection and listener (a connection whose receive is ready
// is watched for input, one whose write was cut short for output, a
// listener with an accept in progress for input), hands the whole set to
// poll(2) or select(2), and then walks the result: O(n) in the number of
// registered sockets per wake-up, which is the point of the experiment
// (the tutorial's claim 1). It reads, writes and accepts itself; nothing
// else touches a descriptor.
//
// The loop blocks in the system call with an infinite timeout (no tick: an
// idle loop costs nothing), unless a listener pauses after EMFILE. The
// goroutine then holds an OS thread, and its P until sysmon hands it on;
// that is part of the model too.
//
// # Requests
//
// Workers and users talk to the loop through a mutex-guarded list of
// requests (recv, a released receive, flush, accept, the closes). A request
// wakes the loop with one write to an eventfd, only if the loop sleeps (a
// flag set under the same mutex just before it blocks), so no wake-up is
// lost and a busy loop is not woken at all: a fan-out that queues a message
// on a thousand connections costs at most one eventfd write, and the loop
// then writes each connection once, with everything queued on it.
//
// # Ownership
//
// pollConn and pollListener state, the registered lists and the scratch
// space belong to the loop; pollBackend.reqs, sleeping, closed, stopped to
// pollBackend.mu (a leaf lock). A descriptor is closed only by the loop (or,
// once the loop has stopped, by closeListener on a listener it never saw).
//
// # Receive buffers
//
// A buffer comes from the port's pool just before read(2) and goes back at
// once if nothing was read, so an idle connection holds none.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

func init() {
	registerBackend(backendInfo{name: "poll", rank: rankNever, open: openPoll})
}

// Tunables of the poll and select engines.
const (
	pollMaxIov  = 1024 // IOV_MAX: messages in one writev
	pollBacklog = 1<<16 - 1
)

// pollWaitFunc waits, for at most timeout milliseconds (-1: no limit), until
// a descriptor of fds is ready for one of its Events, and sets Revents.
type pollWaitFunc func(fds []unix.PollFd, timeout int) error

// pollBackend is the engine of one port, for both models.
type pollBackend struct {
	p      *Port
	name   string       // "poll" or "select"
	maxFD  int          // descriptors >= maxFD cannot be watched (select's FD_SETSIZE); 0: no cap
	wait   pollWaitFunc // poll(2) or select(2)
	wakefd int          // eventfd that wakes the loop
	done   chan struct{}

	mu       sync.Mutex // guards the fields below; a leaf
	reqs     []pollReq
	sleeping bool // the loop is (about to be) blocked in wait: a request must write wakefd
	closed   bool // close was called: the loop stops
	stopped  bool // the loop has stopped: requests are refused

	// Owned by the loop.
	conns []*pollConn
	lns   []*pollListener
	fds   []unix.PollFd
	fdc   []*pollConn     // the connection of fds[i], or nil
	fdl   []*pollListener // the listener of fds[i], or nil
	iov   [][]byte
	vecs  []unix.Iovec
}

type pollReqKind uint8

const (
	preqRecv pollReqKind = iota // the receive may have become ready (recv, recvReleased)
	preqFlush
	preqCloseConn
	preqAccept
	preqCloseListener
)

type pollReq struct {
	kind pollReqKind
	c    *Conn
	l    *Listener
}

// pollConn is the engine's state of a connection, in Conn.sys; the loop's.
type pollConn struct {
	c      *Conn
	fd     int
	idx    int  // in pollBackend.conns; -1 once closed
	rd     bool // the receive is ready: watch for input
	out    bool // a write was cut short: watch for output
	closed bool
}

// pollListener is the engine's state of a listener, in Listener.sys.
type pollListener struct {
	l     *Listener
	fd    int
	addr  *net.TCPAddr
	local *net.TCPAddr  // every accepted socket's local address, or nil for a wildcard
	done  chan struct{} // closed once fd is closed

	// Owned by the loop.
	idx      int // in pollBackend.lns, or -1
	want     bool
	closed   bool
	pause    time.Duration
	until    time.Time // accepting paused until then (EMFILE and the like)
	reported bool      // the current shortage was reported
}

func openPoll(p *Port) (backend, error) {
	return openPollEngine(p, "poll", 0, func(fds []unix.PollFd, timeout int) error {
		_, err := unix.Poll(fds, timeout)
		return err
	})
}

func openPollEngine(p *Port, name string, maxFD int, wait pollWaitFunc) (backend, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, &OpError{Op: "open", Backend: name, Err: errors.Join(ErrUnavailable, os.NewSyscallError("eventfd", err))}
	}
	if maxFD > 0 && efd >= maxFD {
		unix.Close(efd)
		return nil, &OpError{Op: "open", Backend: name, Err: fmt.Errorf("%s: descriptor %d is past FD_SETSIZE (%d): %w", name, efd, maxFD, ErrUnavailable)}
	}
	be := &pollBackend{p: p, name: name, maxFD: maxFD, wait: wait, wakefd: efd, done: make(chan struct{})}
	go be.loop()
	return be, nil
}

// request hands r to the loop, waking it if it sleeps. It reports false if
// the loop has stopped.
func (be *pollBackend) request(r pollReq) bool {
	be.mu.Lock()
	if be.stopped {
		be.mu.Unlock()
		return false
	}
	be.reqs = append(be.reqs, r)
	wake := be.sleeping
	be.sleeping = false
	be.mu.Unlock()
	if wake {
		be.wakeLoop()
	}
	return true
}

func (be *pollBackend) wakeLoop() {
	var one = [8]byte{1}
	for {
		_, err := unix.Write(be.wakefd, one[:])
		if err != unix.EINTR {
			return // EAGAIN: the counter is full, the loop will wake anyway
		}
	}
}

// ---- the contract ----

func (be *pollBackend) listen(l *Listener, network, address string) error {
	fd, bound, err := listenTCP(be.name, network, address, pollBacklog)
	if err != nil {
		return err
	}
	if be.maxFD > 0 && fd >= be.maxFD {
		unix.Close(fd)
		return &OpError{Op: "listen", Backend: be.name, Addr: bound, Err: be.pastCap(fd)}
	}
	pl := &pollListener{l: l, fd: fd, addr: bound, done: make(chan struct{}), idx: -1}
	if !bound.IP.IsUnspecified() {
		pl.local = bound
	}
	l.sys, l.addr = pl, bound
	return nil
}

// pastCap is the error for a descriptor the engine cannot watch.
func (be *pollBackend) pastCap(fd int) error {
	return fmt.Errorf("%s: descriptor %d is past FD_SETSIZE (%d): the %s model cannot watch it: %w",
		be.name, fd, be.maxFD, be.name, ErrUnsupported)
}

func (be *pollBackend) accept(l *Listener) error {
	if !be.request(pollReq{kind: preqAccept, l: l}) {
		l.acceptFailed(ErrCanceled, true)
	}
	return nil
}

func (be *pollBackend) closeListener(l *Listener) {
	pl := l.sys.(*pollListener)
	if be.request(pollReq{kind: preqCloseListener, l: l}) {
		<-pl.done
		return
	}
	// The loop has stopped, and closed the listeners it knew.
	select {
	case <-pl.done:
	default:
		unix.Close(pl.fd)
		close(pl.done)
	}
}

func (be *pollBackend) recv(c *Conn) error {
	be.request(pollReq{kind: preqRecv, c: c})
	return nil
}

func (be *pollBackend) recvReleased(c *Conn, b *recvBuf) {
	be.p.recv.put(b)
	be.request(pollReq{kind: preqRecv, c: c})
}

func (be *pollBackend) flush(c *Conn) {
	if !be.request(pollReq{kind: preqFlush, c: c}) {
		c.sendDone(0, ErrCanceled)
	}
}

func (be *pollBackend) submit() {} // the loop writes what a batch queued in its next round

func (be *pollBackend) closeConn(c *Conn) {
	be.request(pollReq{kind: preqCloseConn, c: c})
}

func (be *pollBackend) close() {
	be.mu.Lock()
	be.closed = true
	wake := be.sleeping
	be.sleeping = false
	be.mu.Unlock()
	if wake {
		be.wakeLoop()
	}
	<-be.done
}

// ---- the loop ----

func (be *pollBackend) loop() {
	defer close(be.done)
	var reqs []pollReq
	for {
		be.mu.Lock()
		reqs, be.reqs = be.reqs, reqs[:0]
		closing := be.closed
		if closing {
			be.stopped = true
			reqs = append(reqs, be.reqs...)
			be.reqs = nil
		}
		be.mu.Unlock()
		for i := range reqs {
			be.handle(reqs[i])
			reqs[i] = pollReq{}
		}
		if closing {
			be.shutdown()
			return
		}

		timeout := be.build()
		be.mu.Lock()
		if len(be.reqs) > 0 || be.closed {
			timeout = 0
		} else {
			be.sleeping = true
		}
		be.mu.Unlock()
		err := be.wait(be.fds, timeout)
		be.mu.Lock()
		be.sleeping = false
		be.mu.Unlock()
		if err != nil {
			if err != unix.EINTR {
				time.Sleep(time.Millisecond) // ENOMEM and the like: do not spin
			}
			continue
		}
		be.dispatch()
	}
}

// build fills the watched set from every registered socket and returns the
// wait's timeout in milliseconds.
func (be *pollBackend) build() int {
	be.fds = append(be.fds[:0], unix.PollFd{Fd: int32(be.wakefd), Events: unix.POLLIN})
	be.fdc = append(be.fdc[:0], nil)
	be.fdl = append(be.fdl[:0], nil)
	timeout := -1
	var now time.Time
	for _, pl := range be.lns {
		if !pl.want {
			continue
		}
		if !pl.until.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			if d := pl.until.Sub(now); d > 0 {
				ms := int((d + time.Millisecond - 1) / time.Millisecond)
				if timeout < 0 || ms < timeout {
					timeout = ms
				}
				continue
			}
			pl.until = time.Time{}
		}
		be.fds = append(be.fds, unix.PollFd{Fd: int32(pl.fd), Events: unix.POLLIN})
		be.fdc = append(be.fdc, nil)
		be.fdl = append(be.fdl, pl)
	}
	for _, pc := range be.conns {
		var ev int16
		if pc.rd {
			ev |= unix.POLLIN
		}
		if pc.out {
			ev |= unix.POLLOUT
		}
		if ev == 0 {
			// Not watched: poll reports a hang-up even for no events,
			// which would spin on a connection nobody reads.
			continue
		}
		be.fds = append(be.fds, unix.PollFd{Fd: int32(pc.fd), Events: ev})
		be.fdc = append(be.fdc, pc)
		be.fdl = append(be.fdl, nil)
	}
	return timeout
}

// dispatch handles the ready descriptors of the last wait.
func (be *pollBackend) dispatch() {
	for i := range be.fds {
		re := be.fds[i].Revents
		if re == 0 {
			continue
		}
		switch {
		case i == 0:
			var buf [8]byte
			unix.Read(be.wakefd, buf[:])
		case be.fdl[i] != nil:
			be.acceptAll(be.fdl[i])
		default:
			pc := be.fdc[i]
			if pc.closed {
				continue
			}
			if pc.out && re&(unix.POLLOUT|unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
				pc.out = false
				be.write(pc)
			}
			if pc.rd && !pc.closed && re&(unix.POLLIN|unix.POLLERR|unix.POLLHUP|unix.POLLRDHUP|unix.POLLNVAL) != 0 {
				be.read(pc)
			}
		}
	}
	clear(be.fdc)
	clear(be.fdl)
}

func (be *pollBackend) handle(r pollReq) {
	switch r.kind {
	case preqRecv:
		pc := r.c.sys.(*pollConn)
		_, ready, _ := r.c.recvState()
		if pc.closed {
			if ready {
				r.c.deliverRecv(nil, 0, ErrCanceled)
			}
			return
		}
		pc.rd = ready
	case preqFlush:
		pc := r.c.sys.(*pollConn)
		if pc.closed {
			r.c.sendDone(0, ErrCanceled)
			return
		}
		be.write(pc)
	case preqCloseConn:
		be.closeConnNow(r.c.sys.(*pollConn))
	case preqAccept:
		pl := r.l.sys.(*pollListener)
		if pl.closed {
			r.l.acceptFailed(ErrCanceled, true)
			return
		}
		pl.want = true
		if pl.idx < 0 {
			pl.idx = len(be.lns)
			be.lns = append(be.lns, pl)
		}
	case preqCloseListener:
		pl := r.l.sys.(*pollListener)
		if pl.closed {
			return
		}
		be.closeListenerNow(pl)
	}
}

// swapRemove removes the element whose index in s is *i, moving the last
// one into its place (idx returns where an element keeps its index), and
// sets *i to -1; an index already -1 leaves s as it is.
func swapRemove[T any](s []T, i *int, idx func(T) *int) []T {
	if *i < 0 {
		return s
	}
	last := len(s) - 1
	s[*i] = s[last]
	*idx(s[*i]) = *i
	clear(s[last:])
	*i = -1
	return s[:last]
}

func (be *pollBackend) closeListenerNow(pl *pollListener) {
	pl.closed = true
	be.lns = swapRemove(be.lns, &pl.idx, func(x *pollListener) *int { return &x.idx })
	unix.Close(pl.fd)
	close(pl.done)
	if pl.want {
		pl.want = false
		pl.l.acceptFailed(ErrCanceled, true)
	}
}

func (be *pollBackend) closeConnNow(pc *pollConn) {
	if pc.closed {
		return
	}
	pc.closed = true
	be.conns = swapRemove(be.conns, &pc.idx, func(x *pollConn) *int { return &x.idx })
	unix.Close(pc.fd)
	pc.rd = false
	if pc.out {
		pc.out = false
		pc.c.sendDone(0, ErrCanceled)
	}
	if _, ready, _ := pc.c.recvState(); ready {
		pc.c.deliverRecv(nil, 0, ErrCanceled)
	}
	// A descriptor is free again: paused listeners try at once.
	for _, pl := range be.lns {
		pl.until = time.Time{}
	}
}

// shutdown closes every socket the loop still holds, once it has stopped.
func (be *pollBackend) shutdown() {
	for len(be.conns) > 0 {
		be.closeConnNow(be.conns[len(be.conns)-1])
	}
	for len(be.lns) > 0 {
		be.closeListenerNow(be.lns[len(be.lns)-1])
	}
	unix.Close(be.wakefd)
}

// read reads once from pc into a pooled buffer and delivers the result.
func (be *pollBackend) read(pc *pollConn) {
	c := pc.c
	b := be.p.recv.get()
	n, err := unix.Read(pc.fd, b.b)
	for err == unix.EINTR {
		n, err = unix.Read(pc.fd, b.b)
	}
	switch {
	case n > 0:
		c.deliverRecv(b, n, nil)
	case err == unix.EAGAIN:
		be.p.recv.put(b)
		return
	case err == nil:
		be.p.recv.put(b)
		c.deliverRecv(nil, 0, io.EOF) // or the send failure that broke it
	default:
		be.p.recv.put(b)
		c.deliverRecv(nil, 0, os.NewSyscallError("read", err))
	}
	_, ready, _ := c.recvState()
	pc.rd = ready
}

// write writes pc's send queue once, everything queued in one writev.
func (be *pollBackend) write(pc *pollConn) {
	c := pc.c
	{
		be.iov = c.sendBatch(be.iov[:0], pollMaxIov)
		var total int
		be.vecs, total = appendIovecs(be.vecs, be.iov)
		var n int
		var err error
		if total > 0 {
			n, err = sockopt.Writev(pc.fd, be.vecs)
		}
		if err == unix.EAGAIN {
			n, err = 0, nil
		}
		if err != nil {
			unix.Shutdown(pc.fd, unix.SHUT_RDWR) // the receive ends with the send's error
			err = os.NewSyscallError("writev", err)
		}
		clear(be.iov)
		clear(be.vecs)
		be.iov, be.vecs = be.iov[:0], be.vecs[:0]
		if !c.sendDone(n, err) {
			return
		}
		// More is queued: a short write waits for POLLOUT; after a whole
		// one the connection is written again next round, once the others
		// have had their turn (writers that keep its queue full would
		// otherwise hold the loop here for ever).
		pc.out = true
		return
	}
}

// acceptAll accepts on pl until the backlog is empty or accepting stops.
func (be *pollBackend) acceptAll(pl *pollListener) {
	l := pl.l
	for pl.want && !pl.closed {
		nfd, sa, err := unix.Accept4(pl.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			pl.reported, pl.pause = false, 0
			if be.maxFD > 0 && nfd >= be.maxFD {
				unix.Close(nfd)
				if !l.acceptFailed(&OpError{Op: "accept", Backend: be.name, Addr: pl.addr, Err: be.pastCap(nfd)}, false) {
					pl.want = false
				}
				continue
			}
			c := be.newConn(pl, nfd, sa)
			if !l.accepted(c) {
				pl.want = false
			}
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNABORTED:
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			be.acceptPause(pl, err, true)
			return
		case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EOPNOTSUPP:
			pl.want = false
			l.acceptFailed(&OpError{Op: "accept", Backend: be.name, Addr: pl.addr, Err: os.NewSyscallError("accept4", err)}, true)
			return
		default:
			be.acceptPause(pl, err, false)
			return
		}
	}
}

func (be *pollBackend) acceptPause(pl *pollListener, err error, shortage bool) {
	pl.pause = nextAcceptPause(pl.pause)
	pl.until = time.Now().Add(pl.pause)
	report := !shortage || !pl.reported
	if shortage {
		pl.reported = true
	}
	if report {
		if !pl.l.acceptFailed(&OpError{Op: "accept", Backend: be.name, Addr: pl.addr, Err: os.NewSyscallError("accept4", err)}, false) {
			pl.want = false
		}
	}
}

func (be *pollBackend) newConn(pl *pollListener, nfd int, sa unix.Sockaddr) *Conn {
	sockopt.SetNoDelay(nfd)
	var laddr net.Addr
	if pl.local != nil {
		laddr = pl.local
	} else if a, err := sockopt.LocalAddr(nfd); err == nil {
		laddr = a
	}
	var raddr net.Addr
	if a := sockopt.TCPAddr(sa); a != nil {
		raddr = a
	}
	pc := &pollConn{fd: nfd, idx: len(be.conns)}
	c := newConn(be.p, pc, laddr, raddr)
	pc.c = c
	be.conns = append(be.conns, pc)
	return c
}
