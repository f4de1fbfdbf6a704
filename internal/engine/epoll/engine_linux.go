package epoll

// The engine, its pollers and its descriptor table: see doc.go.

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
)

// Tunables of the epoll engine.
const (
	maxPollers    = 4         // pollers (and flushers) per port: min(GOMAXPROCS, this)
	eventsPerWait = 256       // events one epoll_wait returns at most
	maxIov        = 1024      // IOV_MAX: messages in one writev
	backlog       = 1<<16 - 1 // listen(2) caps it at net.core.somaxconn
	submitInline  = 4         // deferred writes a submit makes itself
)

// Engine is the engine of one port.
type Engine struct {
	port    engine.Port
	faults  *engine.Faults  // nil but in tests: see fail
	pool    *engine.BufPool // receive buffers
	pollers []*poller
	next    atomic.Uint32 // round robin over pollers
	gen     atomic.Uint32 // generation numbers of registrations
	conns   table         // connection state by descriptor
	fifo    fifo          // deferred writes, drained by the flushers (as many as pollers)
	paused  atomic.Int32  // listeners pausing after EMFILE and the like
	writes  atomic.Uint64 // writev calls made (Stats.Writes)
	scratch sync.Pool     // *scratch for writes in Submit
	done    chan struct{} // closed by Close: the flushers return

	gate engine.FlushGate // holds writes back while a worker runs

	lnMu sync.Mutex          // guards lns and pks
	lns  map[int32]*listener // listeners by descriptor
	pks  map[int32]*packet   // datagram sockets by descriptor

	dialMu sync.Mutex     // guards dials
	dials  map[*conn]dial // connects in progress

	mu     sync.RWMutex // guards closed; held for reading around registrations and wg.Add
	closed bool
	wg     sync.WaitGroup // pollers, flushers and timer callbacks
}

// poller is one epoll set and the goroutine serving it.
type poller struct {
	e       *Engine
	epfd    int
	file    *os.File // epfd, registered with Go's runtime poller
	events  []unix.EpollEvent
	scratch scratch
	wakes   atomic.Uint64 // times the goroutine woke up (Stats.Wakes)
}

// conn is the engine's state of a connection, the engine.Conn package cport
// holds. It is kept small: an idle connection costs this, the owner's Conn
// and their addresses.
type conn struct {
	owner engine.ConnOwner
	e     *Engine
	fd    int32
	gen   uint32
	mu    sync.Mutex // guards st and shutErr
	st    ecState
	// shutErr is the errno of a failed shutdown(2) (Conn.Shutdown's, or
	// the one after a failed write): the socket is broken, and a receive
	// that finds nothing to read ends with it. Errnos fit in 16 bits.
	shutErr uint16
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
	ecClosed                       // Close was called
	ecReset                        // Close asked for a reset: SO_LINGER {1, 0} right before close(2)
	ecFdClosed                     // the descriptor is closed
	ecDialing                      // a dial's connect is in progress: its poller's next event finishes it (finishDial)
)

// releasableLocked reports whether the descriptor should be closed now, and
// if so marks it closed: the connection is closed and nobody is inside a
// system call on it. reset says whether Close asked for a reset, for
// closeFD.
func (ec *conn) releasableLocked() (release, reset bool) {
	if ec.st&(ecClosed|ecReading|ecWriting|ecFdClosed) != ecClosed {
		return false, false
	}
	ec.st |= ecFdClosed
	return true, ec.st&ecReset != 0
}

// listener is the engine's state of a listener, the engine.Listener package
// cport holds.
type listener struct {
	owner engine.ListenerOwner
	e     *Engine
	fd    int32
	gen   uint32
	addr  net.Addr      // the bound address: a *net.TCPAddr, or a *net.UnixAddr for an adopted Unix listener
	local *net.TCPAddr  // the local address of every accepted socket, or nil for a wildcard listener
	done  chan struct{} // closed once fd is closed

	lastLocal *net.TCPAddr // owned by the accept side's owner: the last getsockname, shared while it repeats
	skips     int          // owned likewise: accept4 failures of single connections in a row (see acceptOnce)

	mu sync.Mutex // guards the fields below
	st elState
	// asks counts the calls of Accept: an owner's report that says to
	// stop (Accepted, AcceptFailed returning false) ends the accept it
	// reports, not one that Accept started meanwhile (a single accept
	// started again as soon as its completion is out, by a handler or
	// another goroutine).
	asks  uint32
	pause time.Duration // current backoff after EMFILE and the like
	timer *time.Timer   // ends a pause
}

type elState uint16

const (
	elReadable elState = 1 << iota // accept4 may find a connection
	elWant                         // an accept is in progress (Listener.Accept)
	elRunning                      // a goroutine owns the accept side (runs acceptLoop)
	elAgain                        // something changed while it did
	elPaused                       // out of descriptors: wait for one to be freed
	elReported                     // the current shortage was reported
	elClosed                       // Close was called
	elFdClosed                     // the descriptor is closed
)

// scratch is a writer's reusable iovec space.
type scratch struct {
	iov  [][]byte
	vecs []unix.Iovec
}

// Open starts an epoll engine for cfg.Port. A system without epoll, or
// one refusing the engine its epoll sets, is reported as
// engine.ErrUnavailable.
func Open(cfg engine.Config) (engine.Engine, error) {
	e := &Engine{
		port:   cfg.Port,
		faults: cfg.Faults,
		pool:   engine.NewBufPool(cfg.RecvBufferSize),
		lns:    make(map[int32]*listener),
		dials:  make(map[*conn]dial),
		done:   make(chan struct{}),
	}
	e.gate.Init(cfg.Port, cfg.FlushDelay, e.Submit, e.deferred)
	n := min(runtime.GOMAXPROCS(0), maxPollers)
	for range n {
		pl, err := e.newPoller()
		if err != nil {
			for _, pl := range e.pollers {
				pl.file.Close()
			}
			return nil, fmt.Errorf("%w: epoll: %w", engine.ErrUnavailable, err)
		}
		e.pollers = append(e.pollers, pl)
	}
	e.fifo.kick = make(chan struct{}, 1)
	for _, pl := range e.pollers {
		rc, err := pl.file.SyscallConn()
		if err != nil { // cannot happen for an *os.File
			panic(err)
		}
		e.wg.Add(2)
		go pl.run(rc)
		go e.flusher()
	}
	return e, nil
}

func (e *Engine) newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	pl := &poller{
		e:      e,
		epfd:   epfd,
		file:   os.NewFile(uintptr(epfd), "cport-epoll"),
		events: make([]unix.EpollEvent, eventsPerWait),
	}
	// Only a descriptor in the runtime poller has deadlines: without one,
	// the poller would never sleep.
	if err := pl.file.SetReadDeadline(time.Time{}); err != nil {
		pl.file.Close()
		return nil, err
	}
	return pl, nil
}

// Stats returns the engine's counters: writev calls, the pollers' wake-ups
// and the number of pollers.
func (e *Engine) Stats() engine.Stats {
	var wakes uint64
	for _, pl := range e.pollers {
		wakes += pl.wakes.Load()
	}
	return engine.Stats{Writes: e.writes.Load(), Wakes: wakes, Loops: len(e.pollers)}
}

// run serves the poller's set until its file is closed.
func (pl *poller) run(rc syscall.RawConn) {
	defer pl.e.wg.Done()
	rc.Read(pl.poll) // returns once the file is closed
}

// poll drains the epoll set and returns false, to be called again when the
// runtime poller sees the set readable.
func (pl *poller) poll(uintptr) bool {
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

func (pl *poller) handle(ev unix.EpollEvent) {
	e := pl.e
	gen := uint32(ev.Pad)
	switch gen & genKinds {
	case genListener:
		e.listenerEvent(ev.Fd, gen)
		return
	case genPacket:
		e.packetEvent(ev, gen)
		return
	}
	ec := e.conns.get(ev.Fd)
	if ec == nil || ec.gen != gen {
		return // the descriptor was closed after the event was queued
	}
	var read, write bool
	ec.mu.Lock()
	if ec.st&ecDialing != 0 {
		// A dial's socket: its readiness is kept for the connection it
		// may now be, and the dial finished.
		if ev.Events&epollIn != 0 {
			ec.st |= ecReadable
			if ev.Events&epollHup != 0 {
				ec.st |= ecHup
			}
		}
		if ev.Events&epollOut != 0 {
			ec.st |= ecWritable
		}
		ec.st &^= ecDialing
		ec.mu.Unlock()
		e.finishDial(ec)
		return
	}
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
		e.write(ec, &pl.scratch)
	}
	if read {
		e.readLoop(ec)
	}
}

// enter registers a goroutine of the engine's that Close must wait for; it
// reports false once the engine is closed.
func (e *Engine) enter() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// register adds a connection's socket to a poller and to the table. It
// returns engine.ErrCanceled once the engine is closed.
func (e *Engine) register(ec *conn) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return engine.ErrCanceled
	}
	i := e.next.Add(1) % uint32(len(e.pollers))
	pl := e.pollers[i]
	e.conns.set(ec.fd, ec)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: ec.fd, Pad: int32(ec.gen)}
	if err := e.epollAdd(pl.epfd, ec.fd, &ev); err != nil {
		e.conns.remove(ec.fd, ec)
		return err
	}
	return nil
}

// The kinds of registration, in a generation number's low bits.
const (
	genListener = 1
	genPacket   = 2
	genKinds    = 3
)

// newGen returns a generation number: its low bits zero for connections,
// genListener for listeners.
func (e *Engine) newGen(listener bool) uint32 {
	g := e.gen.Add(1) << 2
	if listener {
		g |= genListener
	}
	return g
}

// ---- the engine.Conn methods ----

// Recv starts the receive the owner describes: a read if the socket may
// have something (see kickRead).
func (ec *conn) Recv() { ec.e.kickRead(ec) }

// Release takes back a buffer handed over with Deliver: the receive may
// go on.
func (ec *conn) Release(b *engine.Buf) {
	if b != nil {
		ec.e.pool.Put(b)
	}
	ec.e.kickRead(ec)
}

// Flush starts writing the owner's send queue (see Engine.flush).
func (ec *conn) Flush() { ec.e.flush(ec) }

// Shutdown shuts the writing side of the socket down (shutdown(2) SHUT_WR):
// the peer reads an end of stream after what was written. It runs under
// conn.mu, and only while the connection is not closed: the descriptor is
// closed only after ecClosed is set, under the same lock, so it is open,
// and not reused, for the call. shutdown(2) does not block.
//
// A failure (ENOTCONN: the connection is gone) has no caller to go to: the
// receive reports it, once it finds nothing left to read (see shutErr).
func (ec *conn) Shutdown() {
	ec.mu.Lock()
	var errno syscall.Errno
	if ec.st&(ecClosed|ecFdClosed) == 0 {
		if errno = ec.e.shutdown(ec.fd, unix.SHUT_WR); errno != 0 {
			ec.shutErr = uint16(errno)
		}
	}
	ec.mu.Unlock()
	if errno != 0 {
		ec.e.kickRead(ec)
	}
}

// Close closes the connection: an armed receive ends with ErrCanceled once
// it is ready, a write parked or pending with SendDone(0, ErrCanceled), and
// the descriptor is closed once nobody is inside a system call on it, with
// SO_LINGER {1, 0} right before close(2) if reset is asked (the flag
// ecReset carries it to whichever of the reader and the writer closes). A
// reset asked after a close without one still applies if the descriptor is
// not closed yet.
func (ec *conn) Close(reset bool) {
	ec.mu.Lock()
	if reset {
		ec.st |= ecReset
	}
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
		ec.owner.SendDone(0, engine.ErrCanceled)
	}
	if read {
		ec.e.readLoop(ec) // ends an armed receive, closes the descriptor on the way out
	}
}

// closeFD closes ec's descriptor, which nobody uses any more, with a reset
// if asked: SO_LINGER {on, 0} makes close(2) drop unsent data and send an
// RST, leaving the kernel nothing of the connection. Closing the descriptor
// also takes it out of its epoll set (the engine never duplicates it).
func (e *Engine) closeFD(ec *conn, reset bool) {
	e.conns.remove(ec.fd, ec)
	if reset {
		// A failure (the socket already reset by the peer) leaves an
		// ordinary close, which is all that can be done.
		unix.SetsockoptLinger(int(ec.fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	e.closeSocket(ec.fd)
	if e.paused.Load() > 0 {
		e.resumeAccepts()
	}
}

// Close stops the engine and waits for its goroutines to end.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.wg.Wait()
		return
	}
	e.closed = true
	e.mu.Unlock()
	close(e.done) // the flushers return
	e.gate.Stop()
	for _, pl := range e.pollers {
		pl.file.Close() // wakes the poller for good; closes epfd once it is out
	}
	e.wg.Wait()
	e.endDials()
	// Cancel the deferred writes of the (closed) connections.
	var s scratch
	e.drain(&s)
}

// ---- the descriptor table ----

// table maps descriptors to connection states. Readers (pollers) load
// without locking; writers serialize on mu and replace the slice to grow it.
type table struct {
	mu  sync.Mutex
	tab atomic.Pointer[[]atomic.Pointer[conn]]
}

func (t *table) get(fd int32) *conn {
	p := t.tab.Load()
	if p == nil || fd < 0 || int(fd) >= len(*p) {
		return nil
	}
	return (*p)[fd].Load()
}

func (t *table) set(fd int32, ec *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s []atomic.Pointer[conn]
	if p := t.tab.Load(); p != nil {
		s = *p
	}
	if int(fd) >= len(s) {
		ns := make([]atomic.Pointer[conn], max(2*len(s), int(fd)+1, 1024))
		for i := range s {
			ns[i].Store(s[i].Load())
		}
		s = ns
		t.tab.Store(&ns)
	}
	s[fd].Store(ec)
}

func (t *table) remove(fd int32, ec *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.tab.Load(); p != nil && int(fd) < len(*p) {
		(*p)[fd].CompareAndSwap(ec, nil)
	}
}
