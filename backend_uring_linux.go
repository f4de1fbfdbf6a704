package cport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/uring"
)

// The uring engine: the completion port's true counterpart on Linux.
//
// A port has one or more io_uring instances, rings (uringRingCount), each
// owned by one goroutine locked to its OS thread and set up with
// SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them: it alone prepares
// submissions, enters the kernel and reaps completions (the ring's loop).
// A connection belongs to one ring for its whole life, so that the kernel
// work of a fan-out (one sendmsg per connection, most of a broadcast
// server's CPU) is spread over as many threads as there are rings, each
// with its own submission batch. Other goroutines (workers calling Recv,
// Send, Release, Close) hand a loop requests through a short
// mutex-guarded list and wake it, when it sleeps in io_uring_enter, by
// writing to an eventfd it always has a read pending on.
//
// Accepts are single-shot, several in flight (see acceptDepth), all in the
// first ring; the connections they bring are dealt round robin to the
// rings, each taking its connections into its tables when their first
// request comes. Receives are multishot with buffer selection from a
// provided buffer ring, one per ring: the kernel picks a buffer only when
// data has arrived, so an idle connection pins none. Results that arrive
// while the connection's previous completion is out wait in Conn's
// backlog; when the ring runs out of buffers (-ENOBUFS) the receive is
// re-armed once buffers come back. Sends: at most one sendmsg in flight per
// connection (two sends on one TCP socket may interleave, io_uring(7)),
// carrying every message queued meanwhile, an iovec each; while a worker
// runs, the sends it queues wait for its submit (flushGate), so that they
// go out together.
//
// user_data holds an op kind, a generation and a slot index, never a Go
// pointer.
//
// Ownership. Fields marked "loop" are touched only by their ring's loop
// goroutine. reqMu guards reqs. bufMu guards the producer side of the
// buffer ring, lent and bufsClosed. Lock order: Conn.mu, then bufMu or
// reqMu (the engine never takes a Conn lock while holding its own).
//
// Buffer lifetimes. A sendmsg's msghdr and iovecs live in a sendOp owned by
// its connection until the send's CQE; the bytes they point to are Msgs
// referenced by the connection's send queue until sendDone, which runs on
// that CQE. Receive buffers are the provided ring's, one mmap'd slab; the
// kernel owns a buffer from its recycle until a CQE names it, the user from
// then until Release. A ring is closed only once no request of its is in
// flight, and its slab is unmapped once the ring is closed and the last
// buffer lent is back. The eventfd read targets wakeBuf, a field of the
// engine, which outlives the ring.

// uringBackend is the uring engine of one port: its rings.
type uringBackend struct {
	p     *Port
	rings []*uringEngine // rings[0] accepts for all
	next  int            // loop of rings[0]: the ring of the next connection accepted
	gate  flushGate      // holds sends back while a worker runs
	sends atomic.Uint64  // sendmsg submissions (for tests: messages per write)
}

// uringEngine is one ring and its loop.
type uringEngine struct {
	p        *Port
	b        *uringBackend
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

	done chan struct{} // closed when the loop has returned
}

// uconn is the engine's state of one connection, in Conn.sys.
type uconn struct {
	c    *Conn
	e    *uringEngine // the ring the connection belongs to
	fd   int
	slot uint32 // loop: in its tables from its first request (noSlot until then) to its end
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
	uringBufs    uint16 = 1024 // provided receive buffers per ring (of Config.RecvBufferSize)
)

// uringRingsEnv names an environment variable that sets how many rings a
// port has (1 to 64). By default it has one per four CPUs Go runs on, at
// most four: on 2 CPUs, a second ring's thread takes more than it gives
// (measured in docs/bench), while on many a single ring's thread would be
// the bottleneck, the kernel's share of a send being most of its cost.
const uringRingsEnv = "CPORT_URING_RINGS"

// uringRingCount returns how many rings a port gets.
func uringRingCount() (int, error) {
	if v := os.Getenv(uringRingsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return 0, fmt.Errorf("%s=%q: want a number of rings from 1 to 64", uringRingsEnv, v)
		}
		return n, nil
	}
	return min((runtime.GOMAXPROCS(0)+3)/4, 4), nil
}

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
	n, err := uringRingCount()
	if err != nil {
		return nil, fmt.Errorf("cport: uring: %w", err) // not ErrUnavailable: auto does not fall back
	}
	b := &uringBackend{p: p}
	for range n {
		e := &uringEngine{p: p, b: b, evfd: -1, done: make(chan struct{})}
		ready := make(chan error, 1)
		go e.run(ready)
		if err := <-ready; err != nil {
			b.stop()
			return nil, fmt.Errorf("%w: uring: %w", ErrUnavailable, err)
		}
		b.rings = append(b.rings, e)
	}
	b.gate.init(&p.q, uringFlushDelay, b.submit, b.deferred)
	return b, nil
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
		if r.u != nil && r.u.slot == noSlot {
			e.adopt(r.u) // the connection's first request
		}
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

// Connections.

// newUconn wraps a socket accepted for ring e. The connection takes a slot
// in e's tables with its first request, which e's loop handles: the first
// ring's loop, which accepts, does not touch the others' tables.
func newUconn(e *uringEngine, fd int, raddr *net.TCPAddr) *uconn {
	u := &uconn{e: e, fd: fd, slot: noSlot}
	u.c = newConn(e.p, u, localAddr(fd), raddr)
	return u
}

// noSlot is the slot of a connection that has none yet.
const noSlot = ^uint32(0)

// adopt gives u a slot in the loop's tables. Each connection gets a uconn
// of its own (a late request naming a finished one then finds it closing),
// in a slot that is reused under a new generation.
func (e *uringEngine) adopt(u *uconn) {
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

// The backend: requests go to the ring of the connection they name;
// listeners live in the first.

func (b *uringBackend) listen(l *Listener, network, address string) error {
	return b.rings[0].listen(l, network, address)
}

func (b *uringBackend) accept(l *Listener) error {
	b.rings[0].post(ureq{op: rqAccept, l: l.sys.(*ulistener)}, true)
	return nil
}

func (b *uringBackend) closeListener(l *Listener) {
	b.rings[0].post(ureq{op: rqCloseListener, l: l.sys.(*ulistener)}, true)
}

func (b *uringBackend) recv(c *Conn) error {
	u := c.sys.(*uconn)
	u.e.post(ureq{op: rqRecv, u: u}, true)
	return nil
}

func (b *uringBackend) recvReleased(c *Conn, buf *recvBuf) {
	c.sys.(*uconn).e.recvReleased(buf)
}

func (b *uringBackend) flush(c *Conn) {
	// While a worker runs, its sends wait for its submit, so that each
	// connection's sendmsg carries all that the worker's batch queued; a
	// send from any other goroutine wakes the loop at once.
	u := c.sys.(*uconn)
	u.e.post(ureq{op: rqFlush, u: u}, !b.gate.hold())
}

// submit wakes the loops for what a worker's batch queued.
func (b *uringBackend) submit() {
	b.gate.submitted()
	for _, e := range b.rings {
		if e.pending.Load() > 0 {
			e.wake()
		}
	}
}

// deferred reports whether requests wait for a loop.
func (b *uringBackend) deferred() bool {
	for _, e := range b.rings {
		if e.pending.Load() > 0 {
			return true
		}
	}
	return false
}

func (b *uringBackend) closeConn(c *Conn) {
	u := c.sys.(*uconn)
	u.e.post(ureq{op: rqClose, u: u}, true)
}

func (b *uringBackend) close() {
	b.gate.stop() // no more wakes from its timer: the eventfds go
	b.stop()
}

// stop stops the loops, the first before the others: a connection it
// accepts while the port closes is closed at once, by a request to its own
// ring, which must still be there to take it.
func (b *uringBackend) stop() {
	for _, e := range b.rings {
		e.post(ureq{op: rqStop}, true)
		<-e.done
	}
}
