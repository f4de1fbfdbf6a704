package load

import (
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

// On Linux, the receivers of plain TCP clients have no goroutine each: a
// few poll loops, one per CPU, each a goroutine locked to its thread, read
// every socket that is ready, straight into its client's inbox, and check
// what came as a goroutine reader would (client.received). A read then
// costs no wake-up of a goroutine and no switch to it, only the
// recvfrom(2) and a share of one epoll_wait(2); the load generator must
// cost less than what it measures. TLS clients (their records need
// crypto/tls) and the good clients of an abuse case (they read through a
// filter) keep a goroutine each.
//
// The loops share one epoll set: one queue of ready sockets, in the order
// their data arrived, from which each loop takes the next few. So every
// client waits for the same round, a sender's as any other's, and the
// closed-loop senders, which send again only once their own echoes are
// read, pace the run by the round of all the clients. With a set of
// clients per loop, the round of a loop holding no sender bounded nothing:
// that loop could fall behind by seconds (its reads growing until they
// were cheap enough to keep pace), and nothing slowed the senders, which
// all sat on the other loop (1 server, 10 senders, 10,000 clients: senders
// are clients 0, 1000, … 9000, all even, all on loop 0 of 2).
//
// A loop reads a duplicate of the socket's descriptor, registered
// edge-triggered, so that one arrival is handed to one loop, and a client
// is read by one loop at a time (polled.st): a loop that is handed a
// client another loop is reading flags it, and that loop reads again
// before it lets go. A short read ends a turn (on Linux it has emptied the
// receive queue, and the next arrival raises a new edge: see
// shortReadDrains), but for a client whose peer closed or reset (an event
// with EPOLLRDHUP, EPOLLHUP or EPOLLERR): its receive queue holds an end of
// stream or an error that no edge would report again, so it is read until
// EAGAIN, the end or the error, and run.stopSkipping has nothing to do for
// these receivers. The client's connection stays as it was for the rest:
// writes, deadlines, Close.

// pollers are the poll loops of a run, started with its first client.
type pollers struct {
	mu      sync.Mutex
	loops   int                      // loop goroutines running on epfd, 0 until started and once stopped
	epfd    int                      // the loops' epoll set
	wake    int                      // an eventfd in the set, written to stop the loops
	failed  bool                     // the loops could not be made: every receiver has a goroutine
	stopped bool                     // no client may join
	polled  []atomic.Pointer[polled] // by client id, once a loop may read it
	wg      sync.WaitGroup
}

// polled is a client whose receive side the poll loops have: set up by
// pollers.add, then the loops', one at a time (st).
type polled struct {
	c        *client
	fd       int           // the descriptor the loops read (a duplicate), or -1 once done
	detached bool          // c's connection was closed once the loops had fd, which is now the connection (pollers.add)
	st       atomic.Uint32 // pollBusy, pollAgain, pollHup, pollDone
}

// The bits of polled.st.
const (
	pollBusy  = 1 << iota // a loop reads the client: it alone uses c's receive side and fd
	pollAgain             // an arrival was handed to another loop meanwhile: read again before letting go
	pollHup               // the peer closed or reset: read until EAGAIN, not just until a short read
	pollDone              // the receive side ended (pollers.end)
)

// pollEvents is how many ready sockets one epoll_wait takes at most.
const pollEvents = 256

// pollHupEvents are the events that say a socket holds an end of stream
// or an error.
const pollHupEvents = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR

// wakeID is the event data of the loops' eventfd; a client's is its id.
const wakeID = -1

// add hands c's receive side to the poll loops and reports whether it did;
// if not, c needs a reader goroutine. It is called once per client, before
// r.close, with r.readers counting c already.
func (p *pollers) add(r *run, c *client) bool {
	tc, ok := c.conn.(*net.TCPConn)
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || !p.start(r) {
		return false
	}
	fd, err := sockopt.DupNonblock(tc)
	if err != nil {
		return false
	}
	if err := c.openInbox(); err != nil {
		unix.Close(fd)
		c.readDone(err) // as a reader goroutine would end
		return true
	}
	// Nothing but its reader writes to this client any more (only senders
	// send, and the registration sends probes through the first client of
	// each server): its connection goes, once the loops have the socket,
	// and with it the socket's edge-triggered registration in Go's poller,
	// which would wake an idle thread of the runtime at every arrival.
	pc := &polled{c: c, fd: fd, detached: c.own < 0 && c.id >= len(r.cfg.Addrs)}
	p.polled[c.id].Store(pc)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.id)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.polled[c.id].Store(nil)
		unix.Close(fd)
		return false // the reader goroutine takes the inbox as it is
	}
	if pc.detached {
		tc.Close()
	}
	return true
}

// start starts the loops, unless they ran or failed already, and reports
// whether they run. p.mu is held.
func (p *pollers) start(r *run) bool {
	if p.loops > 0 || p.failed {
		return !p.failed
	}
	if err := p.open(); err != nil {
		p.failed = true
		return false
	}
	p.polled = make([]atomic.Pointer[polled], len(r.clients))
	p.loops = min(runtime.GOMAXPROCS(0), runtime.NumCPU(), len(r.clients))
	for range p.loops {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.run()
		}()
	}
	return true
}

// open makes the loops' epoll set and its eventfd.
func (p *pollers) open() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return os.NewSyscallError("eventfd", err)
	}
	// Level-triggered: once written, it is reported to every loop.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	p.epfd, p.wake = epfd, wake
	return nil
}

// stop stops the loops, once the run is closing, ends the receive side of
// the clients they still read and closes their duplicates. It may be
// called again.
func (p *pollers) stop() {
	p.mu.Lock()
	p.stopped = true
	loops := p.loops
	p.loops = 0 // a second stop has nothing to do
	p.mu.Unlock()
	if loops == 0 {
		return
	}
	unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	p.wg.Wait()
	for id := range p.polled {
		if pc := p.polled[id].Load(); pc != nil && pc.st.Load()&pollDone == 0 {
			p.end(pc, nil)
		}
	}
	unix.Close(p.wake)
	unix.Close(p.epfd)
}

// run is a poll loop: it reads the clients whose sockets are ready until
// stop.
func (p *pollers) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]unix.EpollEvent, pollEvents)
	for {
		k, err := epollReady(p.epfd, events)
		if k == 0 && err == nil { // nothing ready: wait
			k, err = unix.EpollWait(p.epfd, events, -1)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil { // a bug: epfd and events are sound
			panic(os.NewSyscallError("epoll_wait", err))
		}
		for _, ev := range events[:k] {
			if ev.Fd == wakeID {
				return
			}
			if pc := p.polled[ev.Fd].Load(); pc != nil && pc.take(ev.Events&pollHupEvents != 0) {
				p.serve(pc)
			}
		}
	}
}

// take reports whether the caller now reads pc (the loop that was handed
// its event); if another loop reads it, it makes that loop read again. hup
// says the event reported an end of stream or an error.
func (pc *polled) take(hup bool) bool {
	for {
		s := pc.st.Load()
		t := s | pollBusy
		if hup {
			t |= pollHup
		}
		switch {
		case s&pollDone != 0:
			return false
		case s&pollBusy != 0:
			t |= pollAgain
		}
		if pc.st.CompareAndSwap(s, t) {
			return s&pollBusy == 0
		}
	}
}

// release lets go of pc, which the caller read, and reports whether it
// did: false if another loop was handed an arrival meanwhile, which the
// caller reads now.
func (pc *polled) release() bool {
	for {
		s := pc.st.Load()
		t := s &^ pollBusy
		if s&pollAgain != 0 {
			t = s &^ pollAgain
		}
		if pc.st.CompareAndSwap(s, t) {
			return s&pollAgain == 0
		}
	}
}

// serve reads pc, which the caller took, until nothing is left to read or
// its stream ended, and lets go of it.
func (p *pollers) serve(pc *polled) {
	for {
		if done, err := pc.c.pollRead(pc.fd, pc.st.Load()&pollHup != 0); done {
			p.end(pc, err)
			return
		}
		if pc.release() {
			return
		}
	}
}

// end ends pc's receive side, which stopped for err, on the loop that
// reads it, or once no loop runs.
func (p *pollers) end(pc *polled, err error) {
	pc.st.Or(pollDone)
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
	unix.Close(pc.fd)
	pc.fd = -1
	pc.c.readDone(err)
}

// pollRead reads c's socket fd, ready, until a read returns short (or,
// with all, until EAGAIN), and checks what came. It reports whether the
// stream ended, and why (a nil error for a clean end of stream).
func (c *client) pollRead(fd int, all bool) (bool, error) {
	for {
		space := len(c.in.buf) - c.in.end
		n, err := readNonblock(fd, c.in.buf[c.in.end:])
		switch {
		case err == unix.EAGAIN:
			if c.at >= c.from && c.at < c.to { // as of the last read
				c.windowEmpty++
			}
			return false, nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return true, os.NewSyscallError("read", err)
		case n == 0: // end of stream
			return true, nil
		}
		if err := c.received(n); err != nil {
			return true, err
		}
		if n < space && !all { // the queue is empty: the next arrival is reported
			return false, nil
		}
	}
}

// ctlWrite writes b, a control frame, from c's receive side: through the
// descriptor the loops read when c's connection was closed for it (see
// pollers.add), waiting for room if need be, until the run closes.
func (c *client) ctlWrite(b []byte) error {
	pc := c.r.poll.of(c)
	if pc == nil || !pc.detached {
		_, err := c.conn.Write(b)
		return err
	}
	return sockopt.WriteAll(pc.fd, b, c.r.closing.Load)
}

// of returns the poll loops' part of c, nil if no loop reads it. Only
// c's receive side (the loop reading it, then) may call it.
func (p *pollers) of(c *client) *polled {
	if c.id >= len(p.polled) { // no loops (or they failed): p.polled is nil
		return nil
	}
	return p.polled[c.id].Load()
}

// readNonblock reads the non-blocking socket fd, which never waits: a raw
// system call, without telling the scheduler that the thread may block
// (entersyscall and exitsyscall), which would also keep its monitor
// (sysmon) polling the loops' threads. It is recvfrom(2), which skips the
// file position lock that read(2) takes.
func readNonblock(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// epollReady is epoll_wait(2) without waiting: it takes the events of
// epfd ready now, by a raw system call, as readNonblock does; the scheduler
// hears of a loop's system calls only when it waits.
func epollReady(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
