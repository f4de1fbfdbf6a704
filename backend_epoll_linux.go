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
// this port is closed or a backoff timer (10 ms doubling to 1 s) fires;
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
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

func init() {
	registerBackend(backendInfo{name: "epoll", rank: rankPoller, open: openEpoll})
}

// Tunables of the epoll engine.
const (
	epollMaxPollers     = 4                      // pollers (and flushers) per port: min(GOMAXPROCS, this)
	epollEventsPerWait  = 256                    // events one epoll_wait returns at most
	epollMaxIov         = 1024                   // IOV_MAX: messages in one writev
	epollBacklog        = 1<<16 - 1              // listen(2) caps it at net.core.somaxconn
	epollFlushDelay     = 500 * time.Microsecond // the longest a running worker's writes wait for its submit
	epollSubmitInline   = 4                      // deferred writes a submit makes itself, per flusher
	epollAcceptPauseMin = 10 * time.Millisecond  // backoff after EMFILE and the like: first pause
	epollAcceptPauseMax = time.Second            // and longest
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

	// The flush timer bounds how long a write deferred by a running worker
	// waits for that worker's submit.
	flushDelay time.Duration // epollFlushDelay; tests may change it before the first write
	flushTimer *time.Timer   // kicks the flushers that have work
	flushArmed atomic.Bool   // flushTimer set, its callback not yet begun
	flushEpoch atomic.Uint64 // submits when flushTimer was set
	submits    atomic.Uint64 // submit calls

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
	be := &epollBackend{p: p, lns: make(map[int32]*epollListener), done: make(chan struct{}), flushDelay: epollFlushDelay}
	be.flushTimer = time.AfterFunc(time.Hour, be.flushTimerFired)
	be.flushTimer.Stop()
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

// ---- receives ----

func (be *epollBackend) recv(c *Conn) error {
	be.kickRead(c.sys.(*epollConn))
	return nil
}

func (be *epollBackend) recvReleased(c *Conn, b *recvBuf) {
	if b != nil {
		be.p.recv.put(b)
	}
	be.kickRead(c.sys.(*epollConn))
}

// kickRead tells the read side that the receive's state changed: it runs
// readLoop if the socket may have something to read (or the connection is
// closed) and nobody else runs it, or makes the one running it look again.
func (be *epollBackend) kickRead(ec *epollConn) {
	ec.mu.Lock()
	switch {
	case ec.st&ecReading != 0:
		ec.st |= ecAgain
		ec.mu.Unlock()
		return
	case ec.st&(ecReadable|ecClosed) == 0:
		ec.mu.Unlock() // nothing to read yet: the next edge will find the receive ready
		return
	}
	ec.st |= ecReading
	ec.mu.Unlock()
	be.readLoop(ec)
}

// readLoop runs the read side of ec, which the caller took (ecReading), and
// lets go of it when nothing is left to do.
func (be *epollBackend) readLoop(ec *epollConn) {
	c := ec.c
	for reads := 0; ; {
		_, ready, _ := c.recvState()
		// Once the port is closing, its queue releases each completion as
		// it is pushed: reading on would be a loop that ends only when the
		// peer stops sending. The connection's close comes next and ends
		// the receive.
		closing := ready && reads > 0 && be.queueClosed()
		ec.mu.Lock()
		switch {
		case ready && ec.st&ecClosed != 0:
			ec.mu.Unlock()
			c.deliverRecv(nil, 0, ErrCanceled)
			continue
		case ready && ec.st&ecReadable != 0 && !closing:
			ec.st &^= ecAgain // the read and the look after it see what that flagged
			ec.mu.Unlock()
			be.readOnce(ec, c)
			reads++
			continue
		case ec.st&ecAgain != 0:
			ec.st &^= ecAgain
			ec.mu.Unlock()
			continue
		}
		ec.st &^= ecReading
		closeFD := ec.releasableLocked()
		ec.mu.Unlock()
		if closeFD {
			be.closeFD(ec)
		}
		return
	}
}

// queueClosed reports whether the port's queue is closed.
func (be *epollBackend) queueClosed() bool {
	q := &be.p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// readOnce reads once from ec into a pooled buffer and delivers the result.
func (be *epollBackend) readOnce(ec *epollConn, c *Conn) {
	b := be.p.recv.get()
	n, err := unix.Read(int(ec.fd), b.b)
	for err == unix.EINTR {
		n, err = unix.Read(int(ec.fd), b.b)
	}
	if n > 0 {
		if n < len(b.b) {
			// Drained (later data raises a new edge), unless the peer's
			// FIN or an error is still to be read.
			ec.mu.Lock()
			if ec.st&(ecAgain|ecHup) == 0 {
				ec.st &^= ecReadable
			}
			ec.mu.Unlock()
		}
		c.deliverRecv(b, n, nil)
		return
	}
	be.p.recv.put(b)
	switch {
	case err == unix.EAGAIN:
		ec.mu.Lock()
		if ec.st&ecAgain == 0 {
			ec.st &^= ecReadable
		}
		ec.mu.Unlock()
	case err == nil:
		// EOF, or a reset whose error a write in progress took (read(2)
		// then returns 0): once that write has reported its failure, the
		// Conn delivers it instead of EOF.
		ec.mu.Lock()
		if ec.st&ecWriting != 0 {
			ec.st = ec.st&^ecReadable | ecEOFWait
			ec.mu.Unlock()
			return
		}
		ec.mu.Unlock()
		c.deliverRecv(nil, 0, io.EOF)
	default:
		c.deliverRecv(nil, 0, os.NewSyscallError("read", err))
	}
}

// ---- sends ----

// flush is called when c's send queue became non-empty with no write in
// flight. The write is left to the connection's flusher, so that the
// caller goes on queuing (a fan-out queues on every connection before the
// first is written). While a worker runs, the flusher is not even woken:
// the worker's submit does that once its batch has queued all it will.
func (be *epollBackend) flush(c *Conn) {
	ec := c.sys.(*epollConn)
	fl := be.flushers[ec.fl]
	if !fl.add(ec) {
		return // the flusher has work already: woken, or to be woken as that was
	}
	if be.workerRunning() {
		be.armFlushTimer() // in case that worker never reaches its submit
		return
	}
	fl.wake()
}

// workerRunning reports whether a worker is between a Wait that returned
// and its next Wait, which starts with a submit.
func (be *epollBackend) workerRunning() bool {
	q := &be.p.q
	q.mu.Lock()
	r := q.running > 0
	q.mu.Unlock()
	return r
}

// submit starts the writes deferred by a worker's batch. A few it makes
// itself, sparing a goroutine switch (a reply to a request); more it leaves
// to the flushers, so that the worker goes back to its completions while
// the flushers write (a fan-out), each on its own goroutine.
func (be *epollBackend) submit() {
	be.submits.Add(1)
	for _, fl := range be.flushers {
		switch n := fl.n.Load(); {
		case n == 0:
		case n <= epollSubmitInline:
			var batch [epollSubmitInline]*epollConn
			k := fl.take(batch[:n])
			s := be.getScratch()
			for _, ec := range batch[:k] {
				be.write(ec, s)
			}
			be.putScratch(s)
		default:
			fl.wake()
		}
	}
}

func (be *epollBackend) getScratch() *epollScratch {
	if s, _ := be.scratch.Get().(*epollScratch); s != nil {
		return s
	}
	return new(epollScratch)
}

func (be *epollBackend) putScratch(s *epollScratch) { be.scratch.Put(s) }

func (be *epollBackend) armFlushTimer() {
	if be.flushArmed.CompareAndSwap(false, true) {
		be.flushEpoch.Store(be.submits.Load())
		be.flushTimer.Reset(be.flushDelay)
	}
}

// flushTimerFired starts the writes deferred by a worker that has not
// reached its submit (it may be blocked in user code), unless workers have
// submitted since the timer was set: each submit starts every deferred
// write there is, so the timer only watches on while writes wait.
func (be *epollBackend) flushTimerFired() {
	if !be.enter() {
		return
	}
	defer be.wg.Done()
	epoch := be.flushEpoch.Load()
	be.flushArmed.Store(false)
	if be.submits.Load() == epoch {
		be.submit()
		return
	}
	for _, fl := range be.flushers {
		if fl.n.Load() > 0 {
			be.armFlushTimer()
			return
		}
	}
}

// epollFlusher writes the connections of one poller whose write was
// deferred: a FIFO of them, and a goroutine draining it when woken. A
// connection is in the FIFO at most once (it holds the write token); one
// written whole that found more queued meanwhile goes back to the tail, so
// that every connection with something to send is written once per round
// and the messages that queue during a round go out together.
type epollFlusher struct {
	be      *epollBackend
	kick    chan struct{} // capacity 1: the FIFO has work
	n       atomic.Int32  // len(q) - head, for submit to look without the lock
	scratch epollScratch  // owned by the flusher's goroutine

	mu   sync.Mutex // guards q and head
	q    []*epollConn
	head int
}

// add appends ec to the FIFO and reports whether it was empty.
func (fl *epollFlusher) add(ec *epollConn) bool {
	fl.mu.Lock()
	fl.q = append(fl.q, ec)
	first := fl.n.Add(1) == 1
	fl.mu.Unlock()
	return first
}

func (fl *epollFlusher) wake() {
	select {
	case fl.kick <- struct{}{}:
	default:
	}
}

// take moves up to len(dst) connections from the head of the FIFO into
// dst.
func (fl *epollFlusher) take(dst []*epollConn) int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	k := copy(dst, fl.q[fl.head:])
	clear(fl.q[fl.head : fl.head+k])
	fl.head += k
	fl.n.Add(int32(-k))
	switch {
	case fl.head == len(fl.q):
		fl.q, fl.head = fl.q[:0], 0
	case fl.head > len(fl.q)/2:
		m := copy(fl.q, fl.q[fl.head:])
		clear(fl.q[m:])
		fl.q, fl.head = fl.q[:m], 0
	}
	return k
}

func (fl *epollFlusher) run() {
	defer fl.be.wg.Done()
	for {
		select {
		case <-fl.kick:
		case <-fl.be.done:
			return
		}
		fl.drain(&fl.scratch)
	}
}

// drain writes the FIFO's connections until it is empty.
func (fl *epollFlusher) drain(s *epollScratch) {
	var batch [64]*epollConn
	for {
		k := fl.take(batch[:])
		if k == 0 {
			return
		}
		for _, ec := range batch[:k] {
			fl.be.write(ec, s)
		}
		clear(batch[:k])
	}
}

// write runs the write side of ec; the caller holds its write token (the
// Conn has a write in progress and nobody else writes it). It returns
// having passed the token on: nothing left to write, parked on EPOLLOUT, or
// back in the pending FIFO.
func (be *epollBackend) write(ec *epollConn, s *epollScratch) {
	c := ec.c
	for {
		ec.mu.Lock()
		if ec.st&ecClosed != 0 {
			ec.mu.Unlock()
			c.sendDone(0, ErrCanceled)
			return
		}
		ec.st = ec.st&^ecWritable | ecWriting
		ec.mu.Unlock()

		s.iov = c.sendBatch(s.iov[:0], epollMaxIov)
		total := 0
		for _, b := range s.iov {
			if len(b) > 0 {
				v := unix.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				s.vecs = append(s.vecs, v)
				total += len(b)
			}
		}
		var n int
		var err error
		if len(s.vecs) > 0 {
			n, err = sockopt.Writev(int(ec.fd), s.vecs)
			be.writes.Add(1)
		}
		if err == unix.EAGAIN {
			n, err = 0, nil
		}
		if err != nil {
			unix.Shutdown(int(ec.fd), unix.SHUT_RDWR) // the receive ends with the send's error
			err = os.NewSyscallError("writev", err)
		}
		clear(s.iov)
		clear(s.vecs)
		s.iov, s.vecs = s.iov[:0], s.vecs[:0]
		more := c.sendDone(n, err) // before ecWriting goes: see ecEOFWait
		ec.mu.Lock()
		ec.st &^= ecWriting
		closeFD := ec.releasableLocked()
		reread := ec.st&ecEOFWait != 0
		if reread {
			ec.st = ec.st&^ecEOFWait | ecReadable
		}
		ec.mu.Unlock()
		if closeFD {
			be.closeFD(ec)
		}
		if reread {
			be.kickRead(ec)
		}
		if !more {
			return
		}
		if n < total {
			// The socket buffer is full: wait for EPOLLOUT, unless one
			// came since the write began.
			ec.mu.Lock()
			if ec.st&(ecWritable|ecClosed) == 0 {
				ec.st |= ecWaitOut
				ec.mu.Unlock()
				return
			}
			ec.mu.Unlock()
			continue
		}
		// All written, and more was queued meanwhile: back to the
		// flusher's FIFO, to be written in its next round with what
		// queues until then.
		if fl := be.flushers[ec.fl]; fl.add(ec) {
			fl.wake()
		}
		return
	}
}

// ---- accepts ----

func (be *epollBackend) listen(l *Listener, network, address string) error {
	fail := func(addr net.Addr, err error) error {
		return &OpError{Op: "listen", Backend: "epoll", Addr: addr, Err: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fail(nil, net.UnknownNetworkError(network))
	}
	la, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return fail(nil, err)
	}
	fd, bound, err := sockopt.ListenTCP(network, la, epollBacklog)
	if err != nil {
		return fail(la, err)
	}
	el := &epollListener{l: l, fd: int32(fd), gen: be.newGen(true), addr: bound, done: make(chan struct{})}
	if !bound.IP.IsUnspecified() {
		el.local = bound
	}
	el.st = elReadable // a first accept4 finds out
	if err := be.registerListener(el); err != nil {
		unix.Close(fd)
		return fail(bound, err)
	}
	l.sys, l.addr = el, bound
	return nil
}

func (be *epollBackend) registerListener(el *epollListener) error {
	be.mu.RLock()
	defer be.mu.RUnlock()
	if be.closed {
		return ErrClosed
	}
	be.lnMu.Lock()
	be.lns[el.fd] = el
	be.lnMu.Unlock()
	pl := be.pollers[be.next.Add(1)%uint32(len(be.pollers))]
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: el.fd, Pad: int32(el.gen)}
	if err := unix.EpollCtl(pl.epfd, unix.EPOLL_CTL_ADD, int(el.fd), &ev); err != nil {
		be.lnMu.Lock()
		delete(be.lns, el.fd)
		be.lnMu.Unlock()
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (be *epollBackend) listenerEvent(fd int32, gen uint32) {
	be.lnMu.Lock()
	el := be.lns[fd]
	be.lnMu.Unlock()
	if el == nil || el.gen != gen {
		return
	}
	be.kickAccept(el, elReadable)
}

func (be *epollBackend) accept(l *Listener) error {
	be.kickAccept(l.sys.(*epollListener), elWant)
	return nil
}

// kickAccept sets flags on el's accept side, then runs acceptLoop unless
// another goroutine does (which then looks again).
func (be *epollBackend) kickAccept(el *epollListener, set elState) {
	el.mu.Lock()
	el.st |= set
	if el.st&elRunning != 0 {
		el.st |= elAgain
		el.mu.Unlock()
		return
	}
	el.st |= elRunning
	el.mu.Unlock()
	be.acceptLoop(el)
}

// acceptLoop runs the accept side of el, which the caller took
// (elRunning), and lets go of it when nothing is left to do.
func (be *epollBackend) acceptLoop(el *epollListener) {
	l := el.l
	for {
		el.mu.Lock()
		st := el.st
		switch {
		case st&elClosed != 0 && st&elWant != 0:
			el.st &^= elWant
			el.mu.Unlock()
			l.acceptFailed(ErrCanceled, true)
			continue
		case st&elClosed == 0 && st&(elWant|elReadable|elPaused) == elWant|elReadable:
			el.st &^= elAgain
			el.mu.Unlock()
			be.acceptOnce(el)
			continue
		case st&elAgain != 0:
			el.st &^= elAgain
			el.mu.Unlock()
			continue
		}
		el.st &^= elRunning
		closeFD := st&(elClosed|elFdClosed) == elClosed
		if closeFD {
			el.st |= elFdClosed
		}
		el.mu.Unlock()
		if closeFD {
			be.lnMu.Lock()
			delete(be.lns, el.fd)
			be.lnMu.Unlock()
			unix.Close(int(el.fd))
			close(el.done)
		}
		return
	}
}

// acceptOnce accepts one connection, or handles why it could not.
func (be *epollBackend) acceptOnce(el *epollListener) {
	l := el.l
	nfd, sa, err := unix.Accept4(int(el.fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	switch err {
	case nil:
		c, err := be.newConn(el, nfd, sa)
		if errors.Is(err, ErrClosed) {
			be.acceptError(el, err, true)
			return
		}
		if err != nil { // epoll_ctl: ENOMEM, ENOSPC (max_user_watches)
			be.acceptPause(el, err, false)
			return
		}
		el.mu.Lock()
		el.st &^= elReported
		el.pause = 0
		el.mu.Unlock()
		if !l.accepted(c) {
			el.mu.Lock()
			el.st &^= elWant
			el.mu.Unlock()
		}
	case unix.EAGAIN:
		el.mu.Lock()
		if el.st&elAgain == 0 {
			el.st &^= elReadable
		}
		el.mu.Unlock()
	case unix.EINTR, unix.ECONNABORTED:
		// Try again: the peer gave up while queued, nothing to report.
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		be.acceptPause(el, os.NewSyscallError("accept4", err), true)
	case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EOPNOTSUPP:
		be.acceptError(el, os.NewSyscallError("accept4", err), true) // the listener is broken
	default: // EPERM (a firewall), EPROTO: report and go on after a pause
		be.acceptPause(el, os.NewSyscallError("accept4", err), false)
	}
}

// acceptError reports an accept failure.
func (be *epollBackend) acceptError(el *epollListener, err error, final bool) {
	if errors.Is(err, ErrClosed) {
		err = ErrCanceled
	} else {
		err = &OpError{Op: "accept", Backend: "epoll", Addr: el.addr, Err: err}
	}
	if !el.l.acceptFailed(err, final) {
		el.mu.Lock()
		el.st &^= elWant
		el.mu.Unlock()
	}
}

// acceptPause stops accepting for a while after err, reporting it unless
// shortage says it is another failure for want of descriptors (or memory)
// in an episode already reported. Accepting resumes when the backoff timer
// fires or, sooner, when a descriptor of the port is closed.
func (be *epollBackend) acceptPause(el *epollListener, err error, shortage bool) {
	el.mu.Lock()
	if el.st&elClosed != 0 {
		el.mu.Unlock()
		return
	}
	el.pause = min(max(2*el.pause, epollAcceptPauseMin), epollAcceptPauseMax)
	report := !shortage || el.st&elReported == 0
	if shortage {
		el.st |= elReported
	}
	if el.st&elPaused == 0 {
		el.st |= elPaused
		be.paused.Add(1)
	}
	if el.timer == nil {
		el.timer = time.AfterFunc(el.pause, func() { be.resumeTimer(el) })
	} else {
		el.timer.Reset(el.pause)
	}
	el.mu.Unlock()
	if report {
		be.acceptError(el, err, false)
	}
}

func (be *epollBackend) resumeTimer(el *epollListener) {
	if !be.enter() {
		return
	}
	defer be.wg.Done()
	be.resumeAccept(el)
}

// resumeAccept ends el's pause and tries accept4 again: an edge-triggered
// set will not report connections that were already pending.
func (be *epollBackend) resumeAccept(el *epollListener) {
	el.mu.Lock()
	if el.st&elPaused == 0 {
		el.mu.Unlock()
		return
	}
	el.st &^= elPaused
	be.paused.Add(-1)
	el.mu.Unlock()
	be.kickAccept(el, elReadable)
}

// resumeAccepts resumes the listeners paused for want of descriptors, one
// having just been freed.
func (be *epollBackend) resumeAccepts() {
	var paused []*epollListener
	be.lnMu.Lock()
	for _, el := range be.lns {
		el.mu.Lock()
		if el.st&elPaused != 0 {
			paused = append(paused, el)
		}
		el.mu.Unlock()
	}
	be.lnMu.Unlock()
	for _, el := range paused {
		be.resumeAccept(el)
	}
}

// epollNetAddr returns a as a net.Addr, nil if a is.
func epollNetAddr(a *net.TCPAddr) net.Addr {
	if a == nil {
		return nil
	}
	return a
}

// newConn sets up an accepted socket and registers it.
func (be *epollBackend) newConn(el *epollListener, nfd int, sa unix.Sockaddr) (*Conn, error) {
	sockopt.SetNoDelay(nfd) // as Go's net does; a failure only costs latency
	laddr := el.local
	if laddr == nil {
		if a, err := sockopt.LocalAddr(nfd); err == nil {
			if !sockopt.SameAddr(a, el.lastLocal) {
				el.lastLocal = a
			}
			laddr = el.lastLocal
		}
	}
	ec := &epollConn{fd: int32(nfd), gen: be.newGen(false)}
	c := newConn(be.p, ec, epollNetAddr(laddr), epollNetAddr(sockopt.TCPAddr(sa)))
	ec.c = c
	if err := be.register(ec); err != nil {
		unix.Close(nfd)
		return nil, err
	}
	return c, nil
}

func (be *epollBackend) closeListener(l *Listener) {
	el := l.sys.(*epollListener)
	el.mu.Lock()
	if el.st&elClosed == 0 {
		el.st |= elClosed
		if el.timer != nil {
			el.timer.Stop()
		}
		if el.st&elPaused != 0 {
			el.st &^= elPaused
			be.paused.Add(-1)
		}
	}
	el.mu.Unlock()
	be.kickAccept(el, 0)
	<-el.done // closed by whoever runs the accept side, soon: it never blocks
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
	be.flushTimer.Stop()
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
