package cport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// listenBacklog asks for a long accept queue; the kernel caps it at
// net.core.somaxconn.
const listenBacklog = 4096

// The uring engine: the completion port's true counterpart on Linux.
//
// One goroutine, locked to its OS thread, owns an io_uring instance set up
// with SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them: it alone
// prepares submissions, enters the kernel and reaps completions (the loop).
// Other goroutines (workers calling Recv, Send, Release, Close) hand it
// requests through a short mutex-guarded list and wake it, when it sleeps in
// io_uring_enter, by writing to an eventfd it always has a read pending on.
//
// Accepts are single-shot, several in flight (see acceptDepth). Receives
// are multishot with buffer selection from a provided buffer ring: the
// kernel picks a buffer only when data has arrived, so an idle connection
// pins none. Results that arrive while the connection's previous
// completion is out wait in Conn's backlog; when the
// ring runs out of buffers (-ENOBUFS) the receive is re-armed once buffers
// come back. Sends: at most one sendmsg in flight per connection (two sends
// on one TCP socket may interleave, io_uring(7)), carrying every message
// queued meanwhile, an iovec each.
//
// user_data holds an op kind, a generation and a slot index, never a Go
// pointer.
//
// Ownership. Fields marked "loop" are touched only by the loop goroutine.
// reqMu guards reqs. bufMu guards the producer side of the buffer ring, lent
// and bufsClosed. Lock order: Conn.mu, then bufMu or reqMu (the engine never
// takes a Conn lock while holding its own).
//
// Buffer lifetimes. A sendmsg's msghdr and iovecs live in a sendOp owned by
// its connection until the send's CQE; the bytes they point to are Msgs
// referenced by the connection's send queue until sendDone, which runs on
// that CQE. Receive buffers are the provided ring's, one mmap'd slab; the
// kernel owns a buffer from its recycle until a CQE names it, the user from
// then until Release. The ring is closed only once no request is in flight,
// and the slab is unmapped once the ring is closed and the last buffer lent
// is back. The eventfd read targets
// wakeBuf, a field of the engine, which outlives the ring.
type uringEngine struct {
	p *Port

	ring     *uring.Ring  // loop
	conns    []*uconn     // loop: by slot; nil when free
	gens     []uint32     // loop: by slot, bumped at each reuse
	freeSlot []uint32     // loop
	sendPool []*sendOp    // loop: free sendOps
	lns      []*ulistener // loop: by slot
	inflight int          // loop: requests whose last CQE is still to come (the wake-up read aside)
	cqes     []uring.CQE  // loop: the reaping batch
	work     []ureq       // loop: requests being handled
	starved  []*uconn     // loop: receives stopped for want of buffers
	stopping bool         // loop
	wakeBuf  [8]byte      // the eventfd read's target

	evfd     int
	sleeping atomic.Bool  // the loop is, or is about to be, blocked in io_uring_enter
	pending  atomic.Int32 // len(reqs), for a lock-free look
	reqMu    sync.Mutex
	reqs     []ureq

	bufMu      sync.Mutex
	bufs       *uring.BufRing
	rbufs      []recvBuf   // one per buffer id, their slices into the ring's slab; fixed after setup
	lent       int         // buffers held by the user or a backlog
	bufsClosed bool        // the ring is gone: buffers coming back are dropped, the last unmaps slab
	slab       []byte      // the buffers' memory (mmap)
	hungry     atomic.Bool // a receive starves: the next release must wake the loop

	gate  flushGate     // holds sends back while a worker runs
	sends atomic.Uint64 // sendmsg submissions (for tests: messages per write)
	done  chan struct{} // closed when the loop has returned
}

// uconn is the engine's state of one connection, in Conn.sys.
type uconn struct {
	c    *Conn
	fd   int
	slot uint32 // in the loop's tables, for the uconn's life
	gen  uint32 // the slot's generation, for user_data

	recvOn   bool    // loop: a receive is in the kernel
	multi    bool    // loop: it is multishot
	send     *sendOp // loop: the sendmsg in the kernel, or nil
	canceled bool    // loop: the cancel of everything has been submitted
	cancelOn bool    // loop: its CQE is still to come
	closing  bool    // loop: closed by the user; finish once quiet
	starving bool    // loop: in starved
	broken   bool    // loop: a send failed; the socket was shut down
}

// sendOp is the memory a sendmsg hands the kernel.
type sendOp struct {
	msg  unix.Msghdr
	iov  []unix.Iovec
	bufs [][]byte
}

type ulistener struct {
	l        *Listener
	fd       int
	slot     uint32
	pending  int            // loop: accepts in the kernel
	closing  bool           // loop
	cancelOn bool           // loop
	timerOn  bool           // loop: backing off after EMFILE and the like
	pause    time.Duration  // loop: the current back-off
	ts       uring.Timespec // the back-off timeout's argument, read by the kernel
	acc      [acceptDepth]acceptOp
}

// acceptDepth is how many accepts a listener keeps in the kernel while
// accepting continuously. They are single-shot, each with an address buffer
// of its own: a multishot accept has one buffer for every connection, and
// getpeername fails on a peer that reset before its accept was reaped, so
// that the server could not name the client it logs.
const acceptDepth = 8

// acceptOp is the memory an accept hands the kernel: the peer's address.
type acceptOp struct {
	sa    unix.RawSockaddrAny
	salen uint32
	on    bool // loop: in the kernel
}

// ureq is a request for the loop.
type ureq struct {
	op uint8
	u  *uconn
	l  *ulistener
}

const (
	rqRecv uint8 = iota + 1
	rqFlush
	rqClose
	rqAccept
	rqCloseListener
	rqFeed // buffers came back: re-arm starved receives
	rqStop
)

// Kinds of user_data.
const (
	ukWake uint64 = iota + 1
	ukAccept
	ukRecv
	ukSend
	ukCancel
	ukTimer
	ukCancelListener
)

func udata(kind uint64, gen, slot uint32) uint64 {
	return kind<<56 | uint64(gen&0xffffff)<<32 | uint64(slot)
}

func udataSplit(ud uint64) (kind uint64, gen, slot uint32) {
	return ud >> 56, uint32(ud>>32) & 0xffffff, uint32(ud)
}

// Sizes of the engine's rings: variables so that tests can shrink them.
var (
	uringEntries uint32 = 4096 // submission queue; the completion queue is 4x
	uringBufs    uint16 = 1024 // provided receive buffers (of Config.RecvBufferSize)
)

const (
	uringMaxIov    = 1024 // IOV_MAX: messages in one sendmsg
	maxFreeSendOps = 1024 // sendOps kept for reuse; a fan-out to more connections allocates
	maxIdleReqs    = 4096 // request slots kept for reuse after a burst

	uringFlushDelay = 500 * time.Microsecond // the longest a running worker's sends wait for its submit
)

// uringFailEnv names an environment variable that makes the engine's setup
// fail with the errno it names (EPERM, ENOSYS, ...), as a seccomp profile or
// kernel.io_uring_disabled would: for testing the fallback.
const uringFailEnv = "CPORT_URING_FAIL"

func init() {
	registerBackend(backendInfo{name: "uring", rank: rankKernel, open: openUring})
}

func openUring(p *Port) (backend, error) {
	e := &uringEngine{p: p, evfd: -1, done: make(chan struct{})}
	e.gate.init(&p.q, uringFlushDelay, e.submit, func() bool { return e.pending.Load() > 0 })
	ready := make(chan error, 1)
	go e.run(ready)
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("%w: uring: %w", ErrUnavailable, err)
	}
	return e, nil
}

// setup checks the kernel and creates the ring, the buffer ring and the
// eventfd. It runs on the loop's locked thread.
func (e *uringEngine) setup() error {
	if name := os.Getenv(uringFailEnv); name != "" {
		errno := unix.EPERM
		for en := unix.Errno(1); en < 256; en++ {
			if unix.ErrnoName(en) == name {
				errno = en
			}
		}
		return fmt.Errorf("io_uring_setup: %w (simulated by %s=%s)", errno, uringFailEnv, name)
	}
	if err := kernelAtLeast(6, 0); err != nil {
		return err // multishot receive
	}
	ring, err := uring.Setup(uringEntries, nil)
	if err != nil {
		return err
	}
	probe, err := ring.Probe()
	if err != nil {
		ring.Close()
		return err
	}
	for _, op := range []uint8{uring.IORING_OP_ACCEPT, uring.IORING_OP_RECV, uring.IORING_OP_SENDMSG,
		uring.IORING_OP_ASYNC_CANCEL, uring.IORING_OP_READ, uring.IORING_OP_TIMEOUT} {
		if !probe.Supports(op) {
			ring.Close()
			return fmt.Errorf("io_uring: the kernel lacks opcode %d", op)
		}
	}
	// The buffers live outside the Go heap: a slab of megabytes on the heap
	// would raise the collector's goal, and with it the garbage a server
	// keeps resident. It is unmapped once the ring is gone and every buffer
	// lent is back.
	slab, err := unix.Mmap(-1, 0, int(uringBufs)*e.p.cfg.RecvBufferSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		ring.Close()
		return os.NewSyscallError("mmap", err)
	}
	bufs, err := ring.RegisterBufRingMem(uringBufs, 0, e.p.cfg.RecvBufferSize, slab)
	if err != nil {
		ring.Close()
		unix.Munmap(slab)
		return err
	}
	e.slab = slab
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		ring.Close()
		return os.NewSyscallError("eventfd", err)
	}
	e.ring, e.bufs, e.evfd = ring, bufs, evfd
	e.rbufs = make([]recvBuf, bufs.Len())
	for i := range e.rbufs {
		e.rbufs[i] = recvBuf{b: bufs.Buf(uint16(i)), id: int32(i)}
	}
	e.cqes = make([]uring.CQE, 256)
	return nil
}

// kernelAtLeast reports an error unless the running kernel is at least
// major.minor.
func kernelAtLeast(major, minor int) error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) >= 2 {
		maj, err1 := strconv.Atoi(parts[0])
		mnr, err2 := strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
		if err1 == nil && err2 == nil && (maj > major || maj == major && mnr >= minor) {
			return nil
		}
	}
	return fmt.Errorf("kernel %s is older than %d.%d", rel, major, minor)
}

// run is the loop goroutine.
func (e *uringEngine) run(ready chan<- error) {
	// The ring accepts submissions from this thread only; the thread ends
	// with the goroutine (no UnlockOSThread), taking nothing of the ring's
	// with it to other goroutines.
	runtime.LockOSThread()
	if err := e.setup(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	defer close(e.done)
	e.armWake()
	for {
		e.handleRequests()
		if e.stopping && e.inflight == 0 && e.pending.Load() == 0 {
			break
		}
		wait := uint32(1)
		e.sleeping.Store(true)
		if e.pending.Load() > 0 {
			wait = 0
		}
		_, err := e.ring.SubmitAndWait(wait)
		e.sleeping.Store(false)
		if err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EAGAIN) {
			e.p.log.Error("cport: io_uring_enter failed", "err", err)
			time.Sleep(time.Millisecond) // do not spin on a persistent failure
		}
		e.reap()
		if len(e.starved) > 0 {
			e.bufMu.Lock()
			some := e.lent < len(e.rbufs)
			e.bufMu.Unlock()
			if some {
				e.feedStarved()
			}
		}
	}
	e.shutdown()
}

// shutdown releases the ring once nothing is in flight.
func (e *uringEngine) shutdown() {
	e.bufMu.Lock()
	e.bufsClosed = true // no more recycling into the ring, whose memory goes now
	e.ring.Close()      // also cancels the eventfd read and drops the buffer ring
	if e.lent == 0 {
		e.unmapSlab()
	}
	e.bufMu.Unlock()
	unix.Close(e.evfd)
	for _, u := range e.conns {
		if u != nil && u.fd >= 0 {
			unix.Close(u.fd)
		}
	}
	for _, ul := range e.lns {
		if ul != nil && ul.fd >= 0 {
			unix.Close(ul.fd)
		}
	}
}

// post hands a request to the loop; wake says whether to wake it now.
func (e *uringEngine) post(r ureq, wake bool) {
	e.reqMu.Lock()
	e.reqs = append(e.reqs, r)
	e.pending.Add(1)
	e.reqMu.Unlock()
	if wake {
		e.wake()
	}
}

var eventfdOne = [8]byte{1}

// wake interrupts the loop's io_uring_enter, if it sleeps there.
func (e *uringEngine) wake() {
	if e.sleeping.CompareAndSwap(true, false) {
		unix.Write(e.evfd, eventfdOne[:])
	}
}

// submit wakes the loop for what a worker's batch queued.
func (e *uringEngine) submit() {
	e.gate.submitted()
	if e.pending.Load() > 0 {
		e.wake()
	}
}

func (e *uringEngine) handleRequests() {
	if e.pending.Load() == 0 {
		return
	}
	e.reqMu.Lock()
	e.work, e.reqs = e.reqs, e.work[:0]
	if cap(e.reqs) > maxIdleReqs {
		e.reqs = nil // a burst is over: let go of its memory
	}
	e.pending.Store(0)
	e.reqMu.Unlock()
	for i := range e.work {
		r := e.work[i]
		e.work[i] = ureq{}
		switch r.op {
		case rqRecv:
			e.armRecv(r.u)
		case rqFlush:
			if r.u.send == nil {
				e.startSend(r.u)
			}
		case rqClose:
			e.closeConnLoop(r.u)
		case rqAccept:
			e.armAccept(r.l)
		case rqCloseListener:
			e.closeListenerLoop(r.l)
		case rqFeed:
			e.feedStarved()
		case rqStop:
			e.stopping = true
		}
	}
}

// sqe returns a free submission entry, submitting to make room if needed.
func (e *uringEngine) sqe() *uring.SQE {
	for {
		if s := e.ring.GetSQE(); s != nil {
			return s
		}
		if _, err := e.ring.Submit(); err != nil {
			e.reap() // the kernel wants completions reaped first
		}
	}
}

func (e *uringEngine) armWake() {
	s := e.sqe()
	s.PrepRead(e.evfd, e.wakeBuf[:], ^uint64(0))
	s.UserData = udata(ukWake, 0, 0)
}

func (e *uringEngine) reap() {
	for {
		n := e.ring.PeekBatch(e.cqes)
		if n == 0 {
			return
		}
		for i := range e.cqes[:n] {
			e.complete(&e.cqes[i])
		}
		e.ring.Advance(uint32(n))
	}
}

func (e *uringEngine) complete(cqe *uring.CQE) {
	kind, gen, slot := udataSplit(cqe.UserData)
	switch kind {
	case ukWake:
		if !e.stopping {
			e.armWake()
		}
	case ukRecv, ukSend, ukCancel:
		u := e.conns[slot]
		if u == nil || u.gen != gen {
			return // cannot happen: a slot is reused only once quiet
		}
		switch kind {
		case ukRecv:
			e.recvDone(u, cqe)
		case ukSend:
			e.sendDone(u, cqe)
		case ukCancel:
			u.cancelOn = false
			e.inflight--
		}
		e.finishIfQuiet(u)
	case ukAccept, ukTimer, ukCancelListener:
		ul := e.lns[slot]
		if ul == nil {
			return
		}
		switch kind {
		case ukAccept:
			e.acceptDone(ul, gen, cqe)
		case ukTimer:
			ul.timerOn = false
			e.inflight--
			if !ul.closing {
				e.armAccept(ul)
			}
		case ukCancelListener:
			ul.cancelOn = false
			e.inflight--
		}
		e.finishListenerIfQuiet(ul)
	}
}

// The listener.

func (e *uringEngine) listen(l *Listener, network, address string) error {
	fd, addr, err := listenTCP("uring", network, address, listenBacklog)
	if err != nil {
		return err
	}
	// Accepted sockets inherit TCP_NODELAY from the listener.
	sockopt.SetNoDelay(fd)
	l.addr = addr
	ul := &ulistener{l: l, fd: fd}
	l.sys = ul
	// Listeners take a slot when the loop first sees them (armAccept).
	ul.slot = ^uint32(0)
	return nil
}

func (e *uringEngine) accept(l *Listener) error {
	e.post(ureq{op: rqAccept, l: l.sys.(*ulistener)}, true)
	return nil
}

func (e *uringEngine) closeListener(l *Listener) {
	e.post(ureq{op: rqCloseListener, l: l.sys.(*ulistener)}, true)
}

func (e *uringEngine) listenerSlot(ul *ulistener) uint32 {
	if ul.slot == ^uint32(0) {
		ul.slot = uint32(len(e.lns))
		e.lns = append(e.lns, ul)
	}
	return ul.slot
}

func (e *uringEngine) armAccept(ul *ulistener) {
	if ul.timerOn || ul.closing {
		return
	}
	l := ul.l
	l.mu.Lock()
	want, multi := l.accepting, l.multi
	l.mu.Unlock()
	depth := 1
	if multi {
		depth = acceptDepth
	}
	for i := range ul.acc[:depth] {
		a := &ul.acc[i]
		if !want || ul.pending >= depth {
			return
		}
		if a.on {
			continue
		}
		a.salen = uint32(unsafe.Sizeof(a.sa))
		s := e.sqe()
		s.PrepAcceptAddr(ul.fd, &a.sa, &a.salen, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		s.UserData = udata(ukAccept, uint32(i), e.listenerSlot(ul))
		a.on = true
		ul.pending++
		e.inflight++
	}
}

func (e *uringEngine) acceptDone(ul *ulistener, i uint32, cqe *uring.CQE) {
	a := &ul.acc[i]
	a.on = false
	ul.pending--
	e.inflight--
	l := ul.l
	if cqe.Res >= 0 {
		ul.pause = 0
		// Accepted before the listener's close took effect: delivered,
		// as a connection accepted just before Close would be.
		u := e.newConn(int(cqe.Res), rawTCPAddr(&a.sa))
		if l.accepted(u.c) {
			e.armAccept(ul)
		} else if ul.pending > 0 {
			e.cancelAccept(ul) // a single accept was asked, or the port is closing
		}
		return
	}
	errno := unix.Errno(-cqe.Res)
	if ul.closing || errno == unix.ECANCELED {
		if ul.pending == 0 {
			l.acceptFailed(ErrCanceled, true)
		}
		return
	}
	if ul.timerOn {
		return // the shortage is reported, and the timer re-arms
	}
	goOn := l.acceptFailed(&OpError{Op: "accept", Backend: "uring", Addr: l.addr, Err: os.NewSyscallError("accept4", errno)}, false)
	if !goOn {
		if ul.pending > 0 {
			e.cancelAccept(ul)
		}
		return
	}
	switch errno {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		// Out of descriptors or memory: pause rather than spin, then
		// accept again (connections freed meanwhile make room).
		ul.pause = min(max(2*ul.pause, 5*time.Millisecond), time.Second)
		ul.ts = uring.Timespec{Sec: int64(ul.pause / time.Second), Nsec: int64(ul.pause % time.Second)}
		s := e.sqe()
		s.PrepTimeout(&ul.ts, 0, 0)
		s.UserData = udata(ukTimer, 0, ul.slot)
		ul.timerOn = true
		e.inflight++
	default:
		e.armAccept(ul)
	}
}

func (e *uringEngine) cancelAccept(ul *ulistener) {
	if ul.cancelOn {
		return
	}
	s := e.sqe()
	s.PrepCancelFD(ul.fd, uring.IORING_ASYNC_CANCEL_ALL)
	s.UserData = udata(ukCancelListener, 0, ul.slot)
	ul.cancelOn = true
	e.inflight++
}

func (e *uringEngine) closeListenerLoop(ul *ulistener) {
	if ul.closing {
		return
	}
	ul.closing = true
	if ul.pending > 0 {
		e.cancelAccept(ul)
	}
	if ul.timerOn {
		s := e.sqe()
		s.PrepCancel(udata(ukTimer, 0, ul.slot), 0)
		s.UserData = udata(ukCancelListener, 0, ul.slot)
		e.inflight++ // the cancel's own CQE; the timer's comes too
		ul.cancelOn = true
	}
	e.finishListenerIfQuiet(ul)
}

func (e *uringEngine) finishListenerIfQuiet(ul *ulistener) {
	if !ul.closing || ul.pending > 0 || ul.timerOn || ul.cancelOn || ul.fd < 0 {
		return
	}
	unix.Close(ul.fd)
	ul.fd = -1
	ul.l.mu.Lock()
	armed := ul.l.accepting
	ul.l.mu.Unlock()
	if armed {
		ul.l.acceptFailed(ErrCanceled, true)
	}
}

// Connections.

// newConn wraps an accepted socket. Each connection gets a uconn of its own
// (a late request naming a finished one then finds it closing), in a slot
// that is reused under a new generation.
func (e *uringEngine) newConn(fd int, raddr *net.TCPAddr) *uconn {
	u := &uconn{fd: fd}
	if n := len(e.freeSlot); n > 0 {
		u.slot = e.freeSlot[n-1]
		e.freeSlot = e.freeSlot[:n-1]
		e.gens[u.slot]++
	} else {
		u.slot = uint32(len(e.conns))
		e.conns = append(e.conns, nil)
		e.gens = append(e.gens, 0)
	}
	u.gen = e.gens[u.slot] & 0xffffff
	e.conns[u.slot] = u
	u.c = newConn(e.p, u, localAddr(fd), raddr)
	return u
}

func (e *uringEngine) recv(c *Conn) error {
	e.post(ureq{op: rqRecv, u: c.sys.(*uconn)}, true)
	return nil
}

func (e *uringEngine) armRecv(u *uconn) {
	if u.recvOn || u.closing {
		return
	}
	armed, _, closed := u.c.recvState()
	if !armed || closed {
		return
	}
	if u.broken {
		// A send failed before the receive was armed: there is nothing
		// to read, and the receive ends at once with the send's error.
		u.c.deliverRecv(nil, 0, io.EOF)
		return
	}
	u.c.mu.Lock()
	multi := u.c.recvMulti
	u.c.mu.Unlock()
	s := e.sqe()
	if multi {
		s.PrepRecvMultishot(u.fd, e.bufs.Group(), 0)
	} else {
		s.PrepRecvSelect(u.fd, e.bufs.Group(), 0)
	}
	s.UserData = udata(ukRecv, u.gen, u.slot)
	u.recvOn, u.multi = true, multi
	e.inflight++
}

func (e *uringEngine) recvDone(u *uconn, cqe *uring.CQE) {
	more := cqe.Flags&uring.IORING_CQE_F_MORE != 0
	if !more {
		u.recvOn = false
		e.inflight--
	}
	var goOn bool
	switch res := cqe.Res; {
	case res > 0 && u.closing:
		// Arrived after Close: nobody wants it.
		e.bufMu.Lock()
		e.bufs.Recycle(uint16(cqe.Flags >> uring.IORING_CQE_BUFFER_SHIFT))
		e.bufMu.Unlock()
		return
	case res > 0:
		b := &e.rbufs[cqe.Flags>>uring.IORING_CQE_BUFFER_SHIFT]
		e.bufMu.Lock()
		e.lent++
		e.bufMu.Unlock()
		goOn = u.c.deliverRecv(b, int(res), nil)
	case res == 0:
		u.c.deliverRecv(nil, 0, eofOrReset(u.fd))
		return
	case unix.Errno(-res) == unix.ENOBUFS:
		// Every buffer is out: wait until some come back.
		if !u.starving {
			u.starving = true
			e.starved = append(e.starved, u)
			e.hungry.Store(true)
		}
		return
	default:
		u.c.deliverRecv(nil, 0, os.NewSyscallError("recv", unix.Errno(-res)))
		return
	}
	if !more && goOn {
		e.armRecv(u)
	}
}

func (e *uringEngine) recvReleased(c *Conn, b *recvBuf) {
	e.bufMu.Lock()
	e.lent--
	switch {
	case !e.bufsClosed:
		e.bufs.Recycle(uint16(b.id))
	case e.lent == 0:
		e.unmapSlab()
	}
	e.bufMu.Unlock()
	if e.hungry.CompareAndSwap(true, false) {
		e.post(ureq{op: rqFeed}, true)
	}
}

// unmapSlab frees the buffers' memory; under bufMu, once nothing uses it.
func (e *uringEngine) unmapSlab() {
	if e.slab != nil {
		unix.Munmap(e.slab)
		e.slab = nil
	}
}

func (e *uringEngine) feedStarved() {
	list := e.starved
	e.starved = e.starved[:0]
	for _, u := range list {
		u.starving = false
		e.armRecv(u)
	}
}

func (e *uringEngine) flush(c *Conn) {
	// While a worker runs, its sends wait for its submit, so that each
	// connection's sendmsg carries all that the worker's batch queued; a
	// send from any other goroutine wakes the loop at once.
	e.post(ureq{op: rqFlush, u: c.sys.(*uconn)}, !e.gate.hold())
}

func (e *uringEngine) startSend(u *uconn) {
	if u.closing {
		u.c.sendDone(0, ErrCanceled)
		return
	}
	var op *sendOp
	if n := len(e.sendPool); n > 0 {
		op = e.sendPool[n-1]
		e.sendPool = e.sendPool[:n-1]
	} else {
		op = new(sendOp)
	}
	for {
		op.bufs = u.c.sendBatch(op.bufs[:0], uringMaxIov)
		op.iov, _ = appendIovecs(op.iov[:0], op.bufs)
		if len(op.iov) > 0 {
			break
		}
		// Only empty messages: they are written by writing nothing.
		if !u.c.sendDone(0, nil) {
			e.sendPool = append(e.sendPool, op)
			return
		}
	}
	op.msg = unix.Msghdr{Iov: &op.iov[0]}
	op.msg.SetIovlen(len(op.iov))
	s := e.sqe()
	s.PrepSendMsg(u.fd, &op.msg, unix.MSG_NOSIGNAL|unix.MSG_WAITALL)
	s.UserData = udata(ukSend, u.gen, u.slot)
	u.send = op
	e.sends.Add(1)
	e.inflight++
}

func (e *uringEngine) sendDone(u *uconn, cqe *uring.CQE) {
	op := u.send
	u.send = nil
	e.inflight--
	n, err := int(cqe.Res), error(nil)
	if n < 0 {
		n, err = 0, os.NewSyscallError("sendmsg", unix.Errno(-cqe.Res))
	}
	// Drop the references to the Msgs' bytes before they go back to a pool.
	clear(op.bufs)
	clear(op.iov)
	op.msg = unix.Msghdr{}
	if len(e.sendPool) < maxFreeSendOps {
		e.sendPool = append(e.sendPool, op)
	}
	more := u.c.sendDone(n, err)
	if err != nil && !u.closing && !u.broken {
		// Break the connection so that its receive ends with the error.
		u.broken = true
		unix.Shutdown(u.fd, unix.SHUT_RDWR)
	}
	if more {
		e.startSend(u)
	}
}

func (e *uringEngine) closeConn(c *Conn) {
	e.post(ureq{op: rqClose, u: c.sys.(*uconn)}, true)
}

func (e *uringEngine) closeConnLoop(u *uconn) {
	if u.closing {
		return
	}
	u.closing = true
	if (u.recvOn || u.send != nil) && !u.canceled {
		s := e.sqe()
		s.PrepCancelFD(u.fd, uring.IORING_ASYNC_CANCEL_ALL)
		s.UserData = udata(ukCancel, u.gen, u.slot)
		u.canceled, u.cancelOn = true, true
		e.inflight++
	}
	e.finishIfQuiet(u)
}

// finishIfQuiet closes a closing connection's socket and frees its slot
// once the kernel holds nothing of it.
func (e *uringEngine) finishIfQuiet(u *uconn) {
	if !u.closing || u.recvOn || u.send != nil || u.cancelOn || u.fd < 0 {
		return
	}
	// An armed receive the kernel no longer holds (starved, or never
	// armed) still ends with ErrCanceled.
	if armed, _, _ := u.c.recvState(); armed {
		u.c.deliverRecv(nil, 0, ErrCanceled)
	}
	unix.Close(u.fd)
	u.fd = -1
	if u.starving {
		for i, x := range e.starved {
			if x == u {
				e.starved = append(e.starved[:i], e.starved[i+1:]...)
				break
			}
		}
		u.starving = false
	}
	e.conns[u.slot] = nil
	e.freeSlot = append(e.freeSlot, u.slot)
}

func (e *uringEngine) close() {
	e.gate.stop() // no more wakes from its timer: the eventfd goes
	e.post(ureq{op: rqStop}, true)
	<-e.done
}
