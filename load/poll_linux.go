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
// few poll loops, one per CPU, each an epoll set served by one goroutine
// locked to its thread, read every socket that is ready, straight into its
// client's inbox, and check what came as a goroutine reader would
// (client.received). A read then costs no wake-up of a goroutine and no
// switch to it, only the recvfrom(2) and a share of one epoll_wait(2); the
// load generator must cost less than what it measures. TLS clients (their
// records need crypto/tls) and the good clients of an abuse case (they
// read through a filter) keep a goroutine each.
//
// A loop reads a duplicate of the socket's descriptor, registered
// level-triggered: what a read leaves (data, an end of stream, an error)
// is reported again at the next epoll_wait, so a short read ends a turn
// at once (on Linux it has emptied the receive queue: see shortReadDrains)
// and run.stopSkipping has nothing to do for these receivers. The client's
// connection stays as it was for the rest: writes, deadlines, Close.

// pollers are the poll loops of a run, started with its first client.
type pollers struct {
	mu      sync.Mutex
	loops   []*pollLoop
	failed  bool                     // the loops could not be made: every receiver has a goroutine
	stopped bool                     // no client may join
	polled  []atomic.Pointer[polled] // by client id, once its loop may read it
	wg      sync.WaitGroup
}

// polled is a client whose receive side a poll loop has: set up by
// pollers.add, then the loop's.
type polled struct {
	c        *client
	fd       int  // the descriptor the loop reads (a duplicate), or -1 once done
	detached bool // c's connection was closed once the loop had fd, which is now the connection (pollers.add)
}

// A pollLoop is one epoll set and its goroutine.
type pollLoop struct {
	p    *pollers
	epfd int
	wake int // an eventfd in the set, written to stop the loop
}

// pollEvents is how many ready sockets one epoll_wait takes at most.
const pollEvents = 256

// wakeID is the event data of a loop's eventfd; a client's is its id.
const wakeID = -1

// add hands c's receive side to a poll loop and reports whether it did;
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
	// each server): its connection goes, once the loop has the socket, and
	// with it the socket's edge-triggered registration in Go's poller,
	// which would wake an idle thread of the runtime at every arrival.
	pc := &polled{c: c, fd: fd, detached: c.own < 0 && c.id >= len(r.cfg.Addrs)}
	p.polled[c.id].Store(pc)
	l := p.loops[c.id%len(p.loops)]
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.id)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
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
	if p.loops != nil || p.failed {
		return !p.failed
	}
	n := min(runtime.GOMAXPROCS(0), runtime.NumCPU(), len(r.clients))
	for range n {
		l, err := newPollLoop(p)
		if err != nil {
			for _, l := range p.loops {
				l.close()
			}
			p.loops = nil
			p.failed = true
			return false
		}
		p.loops = append(p.loops, l)
	}
	p.polled = make([]atomic.Pointer[polled], len(r.clients))
	for i, l := range p.loops {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.run(i, n)
		}()
	}
	return true
}

func newPollLoop(p *pollers) (*pollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	l := &pollLoop{p: p, epfd: epfd, wake: wake}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		l.close()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return l, nil
}

func (l *pollLoop) close() {
	unix.Close(l.wake)
	unix.Close(l.epfd)
}

// stop stops the loops, once the run is closing: each ends the receive
// side of the clients it still reads, and closes their duplicates. It may
// be called again.
func (p *pollers) stop() {
	p.mu.Lock()
	p.stopped = true
	loops := p.loops
	p.loops = nil // a second stop has nothing to do
	p.mu.Unlock()
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, l := range loops {
		unix.Write(l.wake, one)
	}
	p.wg.Wait()
	for _, l := range loops {
		l.close()
	}
}

// run serves loop i of n (clients i, i+n, i+2n…) until stop.
func (l *pollLoop) run(i, n int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]unix.EpollEvent, pollEvents)
	for {
		k, err := epollReady(l.epfd, events)
		if k == 0 && err == nil { // nothing ready: wait
			k, err = unix.EpollWait(l.epfd, events, -1)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil { // a bug: epfd and events are sound
			panic(os.NewSyscallError("epoll_wait", err))
		}
		for _, ev := range events[:k] {
			if ev.Fd == wakeID {
				l.drop(i, n)
				return
			}
			pc := l.p.polled[ev.Fd].Load()
			if pc == nil || pc.fd < 0 {
				continue
			}
			if done, err := pc.c.pollRead(pc.fd); done {
				l.end(pc, err)
			}
		}
	}
}

// drop ends the receive side of loop i's clients still read.
func (l *pollLoop) drop(i, n int) {
	for id := i; id < len(l.p.polled); id += n {
		if pc := l.p.polled[id].Load(); pc != nil && pc.fd >= 0 {
			l.end(pc, nil)
		}
	}
}

// end ends pc's receive side, which stopped for err.
func (l *pollLoop) end(pc *polled, err error) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
	unix.Close(pc.fd)
	pc.fd = -1
	pc.c.readDone(err)
}

// pollRead reads c's socket fd, ready, until a read returns short, and
// checks what came. It reports whether the stream ended, and why (a nil
// error for a clean end of stream).
func (c *client) pollRead(fd int) (bool, error) {
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
		if n < space { // what is left, if anything, is reported again
			return false, nil
		}
	}
}

// ctlWrite writes b, a control frame, from c's receive side: through the
// descriptor its loop reads when c's connection was closed for it (see
// pollers.add), waiting for room if need be, until the run closes.
func (c *client) ctlWrite(b []byte) error {
	pc := c.r.poll.of(c)
	if pc == nil || !pc.detached {
		_, err := c.conn.Write(b)
		return err
	}
	return sockopt.WriteAll(pc.fd, b, c.r.closing.Load)
}

// of returns the poll loop's part of c, nil if no loop reads it. Only
// c's receive side (its loop, then) may call it.
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
