package cport

// The epoll engine: readiness turned into completions, for Linux systems
// where io_uring is missing or forbidden (old kernels,
// kernel.io_uring_disabled, container seccomp profiles).
//
// # Pollers
//
// A few pollers (min(GOMAXPROCS, 4)), each an epoll instance (epoll(7)) and
// one goroutine, serve all sockets; connections are spread over them round
// robin, listeners too. Every socket is registered once, edge-triggered, for
// everything it will ever need (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET), so the
// hot path makes no epoll_ctl(2) calls; closing the descriptor removes it
// from its epoll set. An event's data is the descriptor and a generation
// number, never a Go pointer: the engine looks the socket's state up in a
// table indexed by descriptor and drops events of a generation gone by (the
// descriptor was closed, and maybe reused, after the event was queued).
//
// A poller does not block in epoll_wait(2): a goroutine blocked in a system
// call keeps its P until sysmon takes it back (20 µs to 10 ms later), and on
// a 2-core machine two such pollers would stall the workers that much after
// every event. An epoll descriptor is itself pollable, so each one is handed
// to Go's runtime poller (os.NewFile on the non-blocking descriptor,
// RawConn.Read): the poller goroutine calls epoll_wait with a zero timeout
// until its set is drained, then parks in the runtime until the set has
// events again. An idle poller is a parked goroutine: no thread, no P, no
// tick. Closing the os.File wakes it for good, which is how close stops the
// pollers (the runtime's own eventfd does the waking, so the engine needs
// none of its own; posted completions go straight to the port's queue and
// never involve the engine).
//
// # Receives
//
// Edge-triggered readiness is heard once, so it is remembered per socket
// (epollConn.st: readable, hup) until a read says the socket is drained: it
// returns EAGAIN, or fewer bytes than the buffer holds while no EPOLLRDHUP
// or error was seen (data arriving after a read raises a new edge). A read
// happens when the receive is ready (Conn.recvState: armed, and for a
// multishot receive its last completion released) and the socket is
// readable. Three kinds of goroutine find out that this may have become
// true: the poller (an edge), a worker starting a receive (recv) or
// releasing a completion (recvReleased), and a closer (closeConn). Whoever
// finds the read side free takes it (ecReading) and runs readLoop, which
// reads into a buffer taken from the port's pool just before read(2) (an
// idle connection holds none) and delivers, until nothing is left to do;
// whoever finds it taken sets ecAgain instead, and the owner looks again
// before it lets go. So one goroutine at a time reads a socket, and no edge
// or state change is lost between the owner's last look and its letting go.
//
// # Sends and coalescing
//
// Speed in a broadcast server is messages per write (DESIGN.md): the engine
// writes a connection with one writev(2) of everything queued on it
// (Conn.sendBatch, up to IOV_MAX messages), and lets queues grow while there
// is other work. flush does not write: it puts the connection on the FIFO of
// its flusher, one goroutine per poller that writes the connections of its
// FIFO one after another. So a fan-out queues a message on every connection
// before the first is written, and what queues on a connection while the
// flusher works through the others goes out together in its next round:
// under load, rounds grow longer and writes fuller by themselves. While a
// worker is running, flush does not even wake the flusher: the worker's
// submit does, at the end of its batch, once its completions have queued all
// they will (a batch relaying k messages to n connections makes n writes of
// k messages, not k·n). A submit that finds only a few connections to write
// (a reply to a request) writes them itself, sparing a goroutine switch. A
// timer (epollFlushDelay) bounds the deferral for a worker that never
// reaches its submit (say, blocked in user code after a Send).
//
// A connection has at most one write in progress (Conn.sending); its write
// token travels: a flusher's FIFO, a goroutine in write, parked on EPOLLOUT
// (ecWaitOut) after a short write, then the poller. After a whole write that
// found more queued meanwhile, the connection goes back to the FIFO's tail
// rather than being written again at once, so that its next write carries
// more. EPOLLOUT edges are remembered (ecWritable) so that one arriving
// between a short write and the parking is not lost. A failed write shuts
// the socket down, so that the receive ends with the send's error
// (Conn.deliverRecv reports it).
//
// # Accepts
//
// accept4(2) runs until EAGAIN in whichever goroutine owns the listener's
// accept side (the same take-or-flag scheme as reads: elRunning, elAgain),
// normally its poller. EMFILE, ENFILE, ENOBUFS and ENOMEM are reported once
// per episode (Listener.acceptFailed, not final) and pause accepting, the
// socket's pending connections left in its backlog, until a descriptor of
// this port is closed or a backoff timer (nextAcceptPause) fires;
// then accept4 is tried again, since an edge-triggered set will not report
// the connections already pending. Nothing spins.
//
// # Closing and descriptor lifetime
//
// A descriptor is closed only when no goroutine is inside a system call on
// it, or it could be reused under that call: closeConn marks the socket
// closed (ecClosed), and whichever of the reader (ecReading) and the writer
// (ecWriting, held only around writev and shutdown) lets go last closes it
// (ecFdClosed), after taking it out of the table. An armed receive then
// completes with ErrCanceled as soon as it is ready, a write parked on
// EPOLLOUT or pending in the FIFO with sendDone(0, ErrCanceled).
//
// # Ownership
//
//   - epollBackend.pollers, flushers: set by openEpoll. closed and wg.Add:
//     mu. lns: lnMu. The table: conns.mu for writers, atomic for readers.
//   - epollConn.c, fd, gen, fl: set before the table publishes it. st:
//     epollConn.mu (never held while calling out).
//   - epollListener.st, pause, timer: epollListener.mu; lastLocal: the
//     goroutine owning the accept side (elRunning).
//   - epollFlusher.q, head: epollFlusher.mu; n: atomic.
//   - epollPoller.events, scratch: the poller's goroutine; likewise a
//     flusher's scratch. Other epollScratch values: one goroutine at a time
//     (from a sync.Pool).
//
// Lock order: Conn.mu and epollConn.mu are never held together (the engine
// reads Conn state through its methods, which lock and unlock Conn.mu);
// epollBackend.lnMu before epollListener.mu; epollFlusher.mu, mu and
// conns.mu are leaves. queue.mu is taken briefly, alone, to see whether a
// worker runs or the queue is closed.
//
// # Buffer lifetimes
//
//   - A receive buffer is taken from the port's pool right before read(2)
//     and given back at once if nothing was read; with data it goes to the
//     completion, and back to the pool on Release (recvReleased).
//   - The iovecs of a write point into Msgs of the connection's send queue,
//     which Conn.sendBatch marks in flight: the Conn keeps their references
//     until sendDone, which is called only after writev returned. The
//     scratch slices are cleared before sendDone, so the engine holds no
//     reference to a Msg's bytes afterwards.
//   - The events buffer given to epoll_wait belongs to its poller.

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	registerBackend(backendInfo{name: "epoll", rank: rankPoller, open: openEpoll})
}

// Tunables of the epoll engine.
const (
	epollMaxPollers    = 4                      // pollers (and flushers) per port: min(GOMAXPROCS, this)
	epollEventsPerWait = 256                    // events one epoll_wait returns at most
	epollMaxIov        = 1024                   // IOV_MAX: messages in one writev
	epollBacklog       = 1<<16 - 1              // listen(2) caps it at net.core.somaxconn
	epollFlushDelay    = 500 * time.Microsecond // the longest a running worker's writes wait for its submit
	epollSubmitInline  = 4                      // deferred writes a submit makes itself, per flusher
)

// epollBackend is the engine of one port.
type epollBackend struct {
	p        *Port
	pollers  []*epollPoller
	next     atomic.Uint32   // round robin over pollers
	gen      atomic.Uint32   // generation numbers of registrations
	conns    epollTable      // connection state by descriptor
	flushers []*epollFlusher // one per poller, writing its connections
	paused   atomic.Int32    // listeners pausing after EMFILE and the like
	writes   atomic.Uint64   // writev calls made (for tests: messages per write)
	scratch  sync.Pool       // *epollScratch for writes in submit
	done     chan struct{}   // closed by close: the flushers return

	gate flushGate // holds writes back while a worker runs

	lnMu sync.Mutex               // guards lns
	lns  map[int32]*epollListener // listeners by descriptor

	mu     sync.RWMutex // guards closed; held for reading around registrations and wg.Add
	closed bool
	wg     sync.WaitGroup // pollers and timer callbacks
}

// epollPoller is one epoll set and the goroutine serving it.
type epollPoller struct {
	be      *epollBackend
	epfd    int
	file    *os.File // epfd, registered with Go's runtime poller
	events  []unix.EpollEvent
	scratch epollScratch
	wakes   atomic.Uint64 // times the goroutine woke up (for tests)
}

// epollConn is the engine's state of a connection, in Conn.sys. It is kept
// small: an idle connection costs this, its Conn and their addresses.
type epollConn struct {
	c   *Conn
	fd  int32
	gen uint32
	mu  sync.Mutex // guards st
	st  ecState
	fl  uint8 // index of its flusher (and poller) in epollBackend.flushers
}

type ecState uint16

const (
	ecReadable ecState = 1 << iota // a read may find data (or EOF, or an error)
	ecHup                          // EPOLLRDHUP, EPOLLHUP or EPOLLERR seen: stay readable until read says otherwise
	ecReading                      // a goroutine owns the read side (runs readLoop)
	ecAgain                        // something changed while it did: look again before letting go
	ecWritable                     // an EPOLLOUT edge came since the last write began
	ecWaitOut                      // a write waits for EPOLLOUT: the poller continues it
	ecWriting                      // a goroutine is inside writev or shutdown, or has yet to report its outcome
	ecEOFWait                      // a read saw EOF while a write was in progress: read again once it is reported
	ecClosed                       // closeConn was called
	ecFdClosed                     // the descriptor is closed
)

// releasableLocked reports whether the descriptor should be closed now, and
// if so marks it closed: the connection is closed and nobody is inside a
// system call on it.
func (ec *epollConn) releasableLocked() bool {
	if ec.st&(ecClosed|ecReading|ecWriting|ecFdClosed) != ecClosed {
		return false
	}
	ec.st |= ecFdClosed
	return true
}

// epollListener is the engine's state of a listener, in Listener.sys.
type epollListener struct {
	l     *Listener
	fd    int32
	gen   uint32
	addr  *net.TCPAddr  // the bound address
	local *net.TCPAddr  // the local address of every accepted socket, or nil for a wildcard listener
	done  chan struct{} // closed once fd is closed

	lastLocal *net.TCPAddr // owned by the accept side's owner: the last getsockname, shared while it repeats

	mu    sync.Mutex // guards the fields below
	st    elState
	pause time.Duration // current backoff after EMFILE and the like
	timer *time.Timer   // ends a pause
}

type elState uint16

const (
	elReadable elState = 1 << iota // accept4 may find a connection
	elWant                         // an accept is in progress (Listener.Accept/AcceptMulti)
	elRunning                      // a goroutine owns the accept side (runs acceptLoop)
	elAgain                        // something changed while it did
	elPaused                       // out of descriptors: wait for one to be freed
	elReported                     // the current shortage was reported
	elClosed                       // closeListener was called
	elFdClosed                     // the descriptor is closed
)

// epollScratch is a writer's reusable iovec space.
type epollScratch struct {
	iov  [][]byte
	vecs []unix.Iovec
}

func openEpoll(p *Port) (backend, error) {
	be := &epollBackend{p: p, lns: make(map[int32]*epollListener), done: make(chan struct{})}
	be.gate.init(&p.q, epollFlushDelay, be.submit, be.deferred)
	n := min(runtime.GOMAXPROCS(0), epollMaxPollers)
	for range n {
		pl, err := be.newPoller()
		if err != nil {
			for _, pl := range be.pollers {
				pl.file.Close()
			}
			return nil, &OpError{Op: "open", Backend: "epoll", Err: errors.Join(ErrUnavailable, err)}
		}
		be.pollers = append(be.pollers, pl)
		be.flushers = append(be.flushers, &epollFlusher{be: be, kick: make(chan struct{}, 1)})
	}
	for i, pl := range be.pollers {
		rc, err := pl.file.SyscallConn()
		if err != nil { // cannot happen for an *os.File
			panic(err)
		}
		be.wg.Add(2)
		go pl.run(rc)
		go be.flushers[i].run()
	}
	return be, nil
}

func (be *epollBackend) newPoller() (*epollPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	pl := &epollPoller{
		be:     be,
		epfd:   epfd,
		file:   os.NewFile(uintptr(epfd), "cport-epoll"),
		events: make([]unix.EpollEvent, epollEventsPerWait),
	}
	// Only a descriptor in the runtime poller has deadlines: without one,
	// the poller would never sleep.
	if err := pl.file.SetReadDeadline(time.Time{}); err != nil {
		pl.file.Close()
		return nil, err
	}
	return pl, nil
}

// run serves the poller's set until its file is closed.
func (pl *epollPoller) run(rc syscall.RawConn) {
	defer pl.be.wg.Done()
	rc.Read(pl.poll) // returns once the file is closed
}

// poll drains the epoll set and returns false, to be called again when the
// runtime poller sees the set readable.
func (pl *epollPoller) poll(uintptr) bool {
	pl.wakes.Add(1)
	for {
		n, err := unix.EpollWait(pl.epfd, pl.events, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil { // EBADF and the like: the set is gone
			return true
		}
		for i := range pl.events[:n] {
			pl.handle(pl.events[i])
		}
		if n < len(pl.events) {
			return false
		}
	}
}

const (
	epollIn  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	epollHup = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	epollOut = unix.EPOLLOUT | unix.EPOLLHUP | unix.EPOLLERR
)

func (pl *epollPoller) handle(ev unix.EpollEvent) {
	be := pl.be
	gen := uint32(ev.Pad)
	if gen&1 != 0 {
		be.listenerEvent(ev.Fd, gen)
		return
	}
	ec := be.conns.get(ev.Fd)
	if ec == nil || ec.gen != gen {
		return // the descriptor was closed after the event was queued
	}
	var read, write bool
	ec.mu.Lock()
	if ev.Events&epollIn != 0 {
		ec.st |= ecReadable
		if ev.Events&epollHup != 0 {
			ec.st |= ecHup
		}
		if ec.st&ecReading != 0 {
			ec.st |= ecAgain
		} else {
			ec.st |= ecReading
			read = true
		}
	}
	if ev.Events&epollOut != 0 {
		ec.st |= ecWritable
		if ec.st&ecWaitOut != 0 {
			ec.st &^= ecWaitOut
			write = true
		}
	}
	ec.mu.Unlock()
	if write {
		be.write(ec, &pl.scratch)
	}
	if read {
		be.readLoop(ec)
	}
}

// enter registers a goroutine of the engine's that close must wait for; it
// reports false once the engine is closed.
func (be *epollBackend) enter() bool {
	be.mu.RLock()
	defer be.mu.RUnlock()
	if be.closed {
		return false
	}
	be.wg.Add(1)
	return true
}

// register adds a connection's socket to a poller and to the table.
func (be *epollBackend) register(ec *epollConn) error {
	be.mu.RLock()
	defer be.mu.RUnlock()
	if be.closed {
		return ErrClosed
	}
	i := be.next.Add(1) % uint32(len(be.pollers))
	pl := be.pollers[i]
	ec.fl = uint8(i)
	be.conns.set(ec.fd, ec)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: ec.fd, Pad: int32(ec.gen)}
	if err := unix.EpollCtl(pl.epfd, unix.EPOLL_CTL_ADD, int(ec.fd), &ev); err != nil {
		be.conns.remove(ec.fd, ec)
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// newGen returns a generation number: even for connections, odd for
// listeners.
func (be *epollBackend) newGen(listener bool) uint32 {
	g := be.gen.Add(1) << 1
	if listener {
		g |= 1
	}
	return g
}

// ---- closing ----

func (be *epollBackend) closeConn(c *Conn) {
	ec := c.sys.(*epollConn)
	ec.mu.Lock()
	if ec.st&ecClosed != 0 {
		ec.mu.Unlock()
		return
	}
	ec.st |= ecClosed
	cancel := ec.st&ecWaitOut != 0
	ec.st &^= ecWaitOut
	read := ec.st&ecReading == 0
	if read {
		ec.st |= ecReading
	} else {
		ec.st |= ecAgain
	}
	ec.mu.Unlock()
	if cancel {
		c.sendDone(0, ErrCanceled)
	}
	if read {
		be.readLoop(ec) // ends an armed receive, closes the descriptor on the way out
	}
}

// closeFD closes ec's descriptor, which nobody uses any more. Closing it
// also takes it out of its epoll set (the engine never duplicates it).
func (be *epollBackend) closeFD(ec *epollConn) {
	be.conns.remove(ec.fd, ec)
	unix.Close(int(ec.fd))
	if be.paused.Load() > 0 {
		be.resumeAccepts()
	}
}

func (be *epollBackend) close() {
	be.mu.Lock()
	if be.closed {
		be.mu.Unlock()
		be.wg.Wait()
		return
	}
	be.closed = true
	be.mu.Unlock()
	close(be.done) // the flushers return
	be.gate.stop()
	for _, pl := range be.pollers {
		pl.file.Close() // wakes the poller for good; closes epfd once it is out
	}
	be.wg.Wait()
	// Cancel the deferred writes of the (closed) connections.
	var s epollScratch
	for _, fl := range be.flushers {
		fl.drain(&s)
	}
}

// ---- the descriptor table ----

// epollTable maps descriptors to connection states. Readers (pollers) load
// without locking; writers serialize on mu and replace the slice to grow it.
type epollTable struct {
	mu  sync.Mutex
	tab atomic.Pointer[[]atomic.Pointer[epollConn]]
}

func (t *epollTable) get(fd int32) *epollConn {
	p := t.tab.Load()
	if p == nil || fd < 0 || int(fd) >= len(*p) {
		return nil
	}
	return (*p)[fd].Load()
}

func (t *epollTable) set(fd int32, ec *epollConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s []atomic.Pointer[epollConn]
	if p := t.tab.Load(); p != nil {
		s = *p
	}
	if int(fd) >= len(s) {
		ns := make([]atomic.Pointer[epollConn], max(2*len(s), int(fd)+1, 1024))
		for i := range s {
			ns[i].Store(s[i].Load())
		}
		s = ns
		t.tab.Store(&ns)
	}
	s[fd].Store(ec)
}

func (t *epollTable) remove(fd int32, ec *epollConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.tab.Load(); p != nil && int(fd) < len(*p) {
		(*p)[fd].CompareAndSwap(ec, nil)
	}
}
