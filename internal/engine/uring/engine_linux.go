package uring

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

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/uring"
)

// portEngine is the uring engine of one port: its rings.
type portEngine struct {
	cfg     engine.Config
	entries uint32 // submission queue entries of a ring
	nbufs   uint16 // provided receive buffers of a ring
	rings   []*ringEngine
	next    int              // loop of rings[0]: the ring of the next connection accepted
	gate    engine.FlushGate // holds sends back while a worker runs
	inline  bool             // cfg.Port.Inline(): a port run to completion
	sends   atomic.Uint64    // sendmsg submissions and workers' writev calls (Stats.Writes)
	wakes   atomic.Uint64    // eventfd writes that woke a loop (Stats.Wakes)
	// Rare events, for Stats: the completion queue found overflowed (its
	// flag newly set), a receive starved of buffers.
	overflows, starved atomic.Uint64

	nextDial   atomic.Uint32 // dials made: each goes to the next ring in turn
	nextPacket atomic.Uint32 // datagram sockets made: each goes to the next ring in turn

	out outq // connections whose write waits for a worker's Submit
	// live orders the workers' writes before the engine's end: Submit
	// writes under its read lock; Close takes it to set closed, after
	// which no worker writes.
	live   sync.RWMutex
	closed bool // guarded by live
}

// ringEngine is one ring and its loop.
type ringEngine struct {
	b        *portEngine
	ring     *uring.Ring // loop
	conns    []*uconn    // loop: by slot; nil when free
	gens     []uint32    // loop: by slot, bumped at each reuse
	freeSlot []uint32    // loop
	// recvErrs holds the error a connection's receive ended with (endRecv:
	// a failed shutdown), which a receive armed later ends with at once,
	// until the connection closes. Few connections have one: it is kept
	// here rather than in every uconn, which an idle connection costs.
	recvErrs map[*uconn]error // loop
	arena    sendArena        // loop: the msghdrs and iovecs of sendmsgs not yet consumed by the kernel
	batch    [][]byte         // loop: the messages of the send being started (startSend)
	again    []*uconn         // loop: connections whose send completed with more queued, to send again at the round's end (sendAgain)
	againRun []*uconn         // loop: the list sendAgain works through, the other's spare
	lns      []*ulistener     // loop: by slot
	dials    []*udial         // loop: connects in the kernel, by slot; nil when free
	freeDial []uint32         // loop: free slots of dials
	inflight int              // loop: requests whose last CQE is still to come (the wake-up read aside)
	cqes     []uring.CQE      // loop: the reaping batch
	work     []ureq           // loop: requests being handled
	starved  []*uconn         // loop: receives stopped for want of buffers
	pks      []*upacket       // loop: datagram sockets by slot; nil when free
	pkGens   []uint32         // loop: by slot, bumped at each reuse
	freePk   []uint32         // loop: free slots of pks
	// pkStarved holds the datagram receives stopped for want of buffers.
	pkStarved []*upacket // loop
	recvmsg   bool       // the kernel has IORING_OP_RECVMSG: datagram sockets (fixed after setup)
	stopping  bool       // loop
	reaping   bool       // loop: inside reap (a nested one copies into a buffer of its own)
	wakeOn    bool       // loop: the eventfd read is in the kernel
	wakeBuf   [8]byte    // the eventfd read's target
	pin       runtime.Pinner

	evfd int
	// tid is the loop's thread, which runs no other goroutine (it is
	// locked to the loop's): written before the loop reports it is ready,
	// read-only after. uconn.Detach compares it with its caller's.
	tid      int
	sleeping atomic.Bool   // the loop is, or is about to be, blocked in io_uring_enter
	pending  atomic.Int32  // len(reqs), for a lock-free look
	held     atomic.Int64  // connections in the tables (Stats.LoopConns)
	reaped   atomic.Uint64 // CQEs taken (Stats.Reaped): added once per batch
	overflow bool          // loop: the CQ overflow flag was set at the last reap
	reqMu    sync.Mutex
	reqs     []ureq

	bufMu      sync.Mutex
	bufs       *uring.BufRing
	rbufs      []engine.Buf // one per buffer id, their slices into the ring's slab; fixed after setup
	lent       int          // buffers held by the user or a backlog
	bufsClosed bool         // the ring is gone: buffers coming back are dropped, the last unmaps slab
	slab       []byte       // the buffers' memory (mmap)
	hungry     atomic.Bool  // a receive starves: the next release must wake the loop

	done chan struct{} // closed when the loop has returned
}

// uconn is the engine's state of one connection: its engine.Conn.
type uconn struct {
	c    engine.ConnOwner
	e    *ringEngine // the ring the connection belongs to
	fd   int32
	slot uint32        // loop: in its tables from its first request (noSlot until then) to its end
	gen  uint32        // the slot's generation, for user_data
	wr   atomic.Uint32 // wrWriting, set by a worker writing the socket; wrClosing, by the loop

	// The flags, together: an idle connection costs this struct (48 bytes).
	send  sendKind   // loop: the send in the kernel, if any
	flags uconnFlags // loop: its states, fRecvOn to fRecvStop
}

// ureq is a request for the loop: its op, the connection it is about, if
// any, and the other party of the rarer requests in x (a *ulistener,
// *udial, *detachReq, engine.DialOwner or *upacket). 32 bytes, where a
// field for each took 64: a fan-out's Flush hands the loops a request for
// every connection at once, and the queue's array grows with them.
type ureq struct {
	op uint8
	u  *uconn
	x  any
}

const (
	rqRecv uint8 = iota + 1
	rqFlush
	rqShutdown
	rqClose
	rqReset // close with a reset
	rqAccept
	rqCloseListener
	rqFeed // buffers came back: re-arm starved receives
	rqStop
	rqDial
	rqDetach
	rqQuiet // a worker's write is over on a closing connection: finish it if quiet
	rqBreak // a worker's write failed: break the connection
	rqCancelDial
	rqPkRecv  // a datagram socket's receive
	rqPkFlush // its sends
	rqPkClose
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
	ukCancelWake
	ukCancelRecv
	ukConnect    // a dial's connect; its slot in dials
	ukCancelDial // the cancel of a connect, as the loop stops
	ukPkRecv     // a datagram socket's recvmsg; its slot in pks
	ukPkSend     // its sendmsg
	ukPkCancel   // the cancel of its requests
)

func udata(kind uint64, gen, slot uint32) uint64 {
	return kind<<56 | uint64(gen&0xffffff)<<32 | uint64(slot)
}

func udataSplit(ud uint64) (kind uint64, gen, slot uint32) {
	return ud >> 56, uint32(ud>>32) & 0xffffff, uint32(ud)
}

// Sizes of a ring, unless engine.Config says otherwise.
const (
	defaultEntries = 4096 // submission queue; the completion queue is 4x
	defaultBufs    = 1024 // provided receive buffers (of Config.RecvBufferSize)
	maxEntries     = 32768
)

// ringsEnv names an environment variable that sets how many rings a port
// has (1 to 64) when engine.Config.Rings is zero. By default it has one per
// four CPUs Go runs on, at most four: on 2 CPUs, a second ring's thread
// takes more than it gives (measured in docs/bench), while on many a single
// ring's thread would be the bottleneck, the kernel's share of a send being
// most of its cost.
const ringsEnv = "CPORT_URING_RINGS"

// ringCount returns how many rings a port gets.
func ringCount(cfg engine.Config) (int, error) {
	if cfg.Rings != 0 {
		if cfg.Rings < 1 || cfg.Rings > 64 {
			return 0, fmt.Errorf("%d rings: want 1 to 64", cfg.Rings)
		}
		return cfg.Rings, nil
	}
	if v := os.Getenv(ringsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return 0, fmt.Errorf("%s=%q: want a number of rings from 1 to 64", ringsEnv, v)
		}
		return n, nil
	}
	return min((runtime.GOMAXPROCS(0)+3)/4, 4), nil
}

// powerOfTwo returns n, or def if n is zero, checking that it is a power of
// two up to maxEntries (the kernel's limit for both queues and buffer rings).
func powerOfTwo(what string, n, def int) (int, error) {
	if n == 0 {
		return def, nil
	}
	if n < 1 || n > maxEntries || n&(n-1) != 0 {
		return 0, fmt.Errorf("%d %s: want a power of two from 1 to %d", n, what, maxEntries)
	}
	return n, nil
}

const (
	maxIov      = 1024 // IOV_MAX: messages in one sendmsg
	maxIdleReqs = 4096 // request slots kept for reuse after a burst
)

// Open starts the uring engine of a port: its rings, each with a loop
// goroutine. A kernel that refuses io_uring, or lacks what the engine uses,
// is an error wrapping engine.ErrUnavailable; a bad size in cfg, or in
// CPORT_URING_RINGS, is an error that does not.
func Open(cfg engine.Config) (engine.Engine, error) {
	n, err := ringCount(cfg)
	if err != nil {
		return nil, fmt.Errorf("cport: uring: %w", err) // not ErrUnavailable: auto does not fall back
	}
	entries, err := powerOfTwo("ring entries", cfg.RingEntries, defaultEntries)
	if err != nil {
		return nil, fmt.Errorf("cport: uring: %w", err)
	}
	nbufs, err := powerOfTwo("receive buffers", cfg.RecvBuffers, defaultBufs)
	if err != nil {
		return nil, fmt.Errorf("cport: uring: %w", err)
	}
	b := &portEngine{cfg: cfg, entries: uint32(entries), nbufs: uint16(nbufs), inline: cfg.Port.Inline()}
	for range n {
		e := &ringEngine{b: b, evfd: -1, done: make(chan struct{})}
		ready := make(chan error, 1)
		go e.run(ready)
		if err := <-ready; err != nil {
			b.stop()
			return nil, fmt.Errorf("%w: uring: %w", engine.ErrUnavailable, err)
		}
		b.rings = append(b.rings, e)
	}
	b.gate.Init(cfg.Port, cfg.FlushDelay, b.Submit, b.deferred)
	return b, nil
}

// setup checks the kernel and creates the ring, the buffer ring and the
// eventfd. It runs on the loop's locked thread.
func (e *ringEngine) setup() error {
	if err := kernelAtLeast(6, 0); err != nil {
		return err // multishot receive
	}
	ring, err := uring.Setup(e.b.entries, nil)
	if err != nil {
		return err
	}
	if ring.Features()&uring.IORING_FEAT_SUBMIT_STABLE == 0 {
		ring.Close() // (5.5 and later have it)
		return errors.New("io_uring: the kernel lacks IORING_FEAT_SUBMIT_STABLE")
	}
	probe, err := ring.Probe()
	if err != nil {
		ring.Close()
		return err
	}
	e.recvmsg = probe.Supports(uring.IORING_OP_RECVMSG)
	for _, op := range []uint8{uring.IORING_OP_ACCEPT, uring.IORING_OP_RECV, uring.IORING_OP_SENDMSG, uring.IORING_OP_SEND,
		uring.IORING_OP_ASYNC_CANCEL, uring.IORING_OP_READ, uring.IORING_OP_TIMEOUT, uring.IORING_OP_CONNECT} {
		if !probe.Supports(op) {
			ring.Close()
			return fmt.Errorf("io_uring: the kernel lacks opcode %d", op)
		}
	}
	// The buffers live outside the Go heap: a slab of megabytes on the heap
	// would raise the collector's goal, and with it the garbage a server
	// keeps resident. It is unmapped once the ring is gone and every buffer
	// lent is back.
	size := e.b.cfg.RecvBufferSize
	slab, err := unix.Mmap(-1, 0, int(e.b.nbufs)*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		ring.Close()
		return os.NewSyscallError("mmap", err)
	}
	bufs, err := ring.RegisterBufRingMem(e.b.nbufs, 0, size, slab)
	if err != nil {
		ring.Close()
		unix.Munmap(slab)
		return err
	}
	e.slab = slab
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		ring.Close()
		unix.Munmap(slab)
		return os.NewSyscallError("eventfd", err)
	}
	e.ring, e.bufs, e.evfd = ring, bufs, evfd
	e.rbufs = make([]engine.Buf, bufs.Len())
	for i := range e.rbufs {
		e.rbufs[i] = engine.Buf{B: bufs.Buf(uint16(i)), ID: int32(i)}
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
func (e *ringEngine) run(ready chan<- error) {
	// The ring accepts submissions from this thread only; the thread ends
	// with the goroutine (no UnlockOSThread), taking nothing of the ring's
	// with it to other goroutines.
	runtime.LockOSThread()
	e.tid = unix.Gettid()
	if err := e.setup(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	defer close(e.done)
	e.pin.Pin(e) // wakeBuf, read into by the kernel, until shutdown
	e.armWake()
	for {
		e.handleRequests()
		if e.stopping && e.inflight == 0 && !e.wakeOn && e.pending.Load() == 0 && len(e.again) == 0 {
			break
		}
		wait := uint32(1)
		e.sleeping.Store(true)
		if e.pending.Load() > 0 {
			wait = 0
		}
		err := e.enter(wait)
		e.sleeping.Store(false)
		if err != nil && !enterAgain(err) {
			e.b.cfg.Logger.Error("cport: io_uring_enter failed", "err", err)
			time.Sleep(time.Millisecond) // do not spin on a persistent failure
		}
		e.reap()
		e.sendAgain()
		if len(e.starved) > 0 || len(e.pkStarved) > 0 {
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

// shutdown releases the ring once the kernel holds nothing of the loop's.
func (e *ringEngine) shutdown() {
	e.bufMu.Lock()
	e.bufsClosed = true // no more recycling into the ring, whose memory goes now
	e.ring.Close()      // also drops the buffer ring
	if e.lent == 0 {
		e.unmapSlab()
	}
	e.bufMu.Unlock()
	unix.Close(e.evfd)
	for _, u := range e.conns {
		if u != nil && u.fd >= 0 {
			e.closeSocket(u)
		}
	}
	for _, pk := range e.pks {
		if pk != nil && pk.fd >= 0 {
			e.closeFD(int(pk.fd))
			pk.pin.Unpin()
		}
	}
	for _, ul := range e.lns {
		if ul.fd >= 0 {
			e.closeFD(ul.fd)
		}
		ul.pin.Unpin()
	}
	e.arena.free()
	e.pin.Unpin()
}

// post hands a request to the loop; wake says whether to wake it now.
func (e *ringEngine) post(r ureq, wake bool) {
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
func (e *ringEngine) wake() {
	if e.sleeping.CompareAndSwap(true, false) {
		e.b.wakes.Add(1)
		unix.Write(e.evfd, eventfdOne[:])
	}
}

func (e *ringEngine) handleRequests() {
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
		if pk, ok := r.x.(*upacket); ok {
			e.handlePacket(r.op, pk)
			continue
		}
		if r.u != nil && r.u.slot == noSlot {
			e.adopt(r.u) // the connection's first request
		}
		switch r.op {
		case rqRecv:
			e.armRecv(r.u)
		case rqFlush:
			if r.u.send == sendNone && !r.u.flags.has(fSendNext) {
				e.startSend(r.u)
			}
		case rqShutdown:
			e.shutdownConn(r.u)
		case rqClose:
			e.closeConnLoop(r.u, false)
		case rqReset:
			e.closeConnLoop(r.u, true)
		case rqAccept:
			e.armAccept(r.x.(*ulistener))
		case rqCloseListener:
			e.closeListenerLoop(r.x.(*ulistener))
		case rqFeed:
			e.feedStarved()
		case rqStop:
			e.stop()
		case rqDial:
			e.startDial(r.x.(*udial))
		case rqDetach:
			det := r.x.(*detachReq)
			det.f, det.err = e.detach(r.u)
			close(det.done)
		case rqQuiet:
			e.finishIfQuiet(r.u)
		case rqBreak:
			e.breakConn(r.u, r.u.c.Broken())
		case rqCancelDial:
			e.cancelDial(r.x.(engine.DialOwner))
		}
	}
	if cap(e.work) > maxIdleReqs {
		e.work = nil // a burst is over: let go of its memory
	}
}

// stop starts the loop's end: it ends once nothing is in the kernel, the
// eventfd read included, which is canceled.
func (e *ringEngine) stop() {
	if e.stopping {
		return
	}
	e.stopping = true
	e.cancelDials()
	if e.wakeOn {
		s := e.sqe()
		s.PrepCancel(udata(ukWake, 0, 0), 0)
		s.UserData = udata(ukCancelWake, 0, 0)
		e.inflight++
	}
}

// sqe returns a free submission entry, submitting to make room if needed.
func (e *ringEngine) sqe() *uring.SQE {
	for {
		if s := e.ring.GetSQE(); s != nil {
			return s
		}
		if err := e.submit(); err != nil {
			e.reap() // the kernel wants completions reaped first
		}
	}
}

// enter submits what is prepared and, with wait, waits for a completion:
// io_uring_enter(2). An error leaves what the kernel did not consume in the
// submission queue, for the next enter: EINTR, EAGAIN and EBUSY (the
// completion queue wants reaping) are retried at the loop's next round.
func (e *ringEngine) enter(wait uint32) error {
	if errno := e.b.cfg.Faults.Fail(engine.CallPoll); errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", errno) // as if the kernel had consumed nothing
	}
	_, err := e.ring.SubmitAndWait(wait)
	if e.ring.SQReady() == 0 {
		e.arena.reset() // the kernel has its own copy of every msghdr and iovec
	}
	return err
}

// submit is enter without the wait.
func (e *ringEngine) submit() error { return e.enter(0) }

// enterAgain reports whether an enter's err is one to retry at once:
// EINTR, EAGAIN, EBUSY.
func enterAgain(err error) bool {
	return errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY)
}

// interrupted reports whether a receive or a send that failed with errno is
// simply made again: EINTR, EAGAIN.
func interrupted(errno unix.Errno) bool { return errno == unix.EINTR || errno == unix.EAGAIN }

func (e *ringEngine) armWake() {
	s := e.sqe()
	s.PrepRead(e.evfd, e.wakeBuf[:], ^uint64(0))
	s.UserData = udata(ukWake, 0, 0)
	e.wakeOn = true
}

// reap handles every completion the kernel has posted. Each batch is
// copied out and its slots handed back before it is handled, and a reap
// nested in the handling (sqe, on a full submission queue whose submit the
// kernel refuses until completions are reaped) copies into a buffer of its
// own: no completion is handled twice, and none is skipped.
func (e *ringEngine) reap() {
	nested, buf := e.reaping, e.cqes
	if nested {
		buf = make([]uring.CQE, 32) // rare: a full submission queue in a handler
	}
	e.reaping = true
	if over := e.ring.CQOverflowed(); over != e.overflow {
		e.overflow = over
		if over {
			e.b.overflows.Add(1)
		}
	}
	for {
		n := e.ring.PeekBatch(buf)
		if n == 0 {
			break
		}
		e.reaped.Add(uint64(n))
		e.ring.Advance(uint32(n))
		for i := range buf[:n] {
			e.complete(&buf[i])
		}
	}
	e.reaping = nested
}

func (e *ringEngine) complete(cqe *uring.CQE) {
	kind, gen, slot := udataSplit(cqe.UserData)
	switch kind {
	case ukWake:
		e.wakeOn = false
		if !e.stopping {
			e.armWake()
		}
	case ukCancelWake, ukCancelDial:
		e.inflight--
	case ukConnect:
		e.connectDone(slot, cqe)
	case ukPkRecv, ukPkSend, ukPkCancel:
		e.completePacket(kind, gen, slot, cqe)
	case ukRecv, ukSend, ukCancel, ukCancelRecv:
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
			u.flags.clear(fCancelOn)
			e.inflight--
		case ukCancelRecv:
			u.flags.clear(fDropOn) // (fRecvStop stays until the receive's last CQE)
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

// newUconn wraps a socket accepted for ring e, between local and raddr
// (either may be nil), and makes the port's side of it with owner, which
// accepted it. The connection takes a slot in e's tables with its first
// request, which e's loop handles: the first ring's loop, which accepts,
// does not touch the others' tables.
func newUconn(e *ringEngine, fd int, local, raddr *net.TCPAddr, owner engine.ListenerOwner) *uconn {
	u := &uconn{e: e, fd: int32(fd), slot: noSlot}
	var laddr net.Addr
	if local != nil {
		laddr = local
	}
	var ra net.Addr
	if raddr != nil {
		ra = raddr
	}
	// In u before anyone can see it: a port closing closes it in Accepted.
	u.c = owner.NewConn(u, laddr, ra)
	return u
}

// noSlot is the slot of a connection that has none yet.
const noSlot = ^uint32(0)

// adopt gives u a slot in the loop's tables. Each connection gets a uconn
// of its own (a late request naming a finished one then finds it closing),
// in a slot that is reused under a new generation.
func (e *ringEngine) adopt(u *uconn) {
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
	e.held.Add(1)
}

// shutdownConn shuts u's writing side down: engine.Conn.Shutdown, on the
// loop.
//
// It is a plain shutdown(2) made by the loop, not an IORING_OP_SHUTDOWN
// submission. The loop is the only goroutine that closes u's descriptor
// (finishIfQuiet), and it sets fClosing before it does: here, with fClosing
// unset, the descriptor is certainly open and still u's, never closed or
// reused by another socket. shutdown(2) of a TCP socket does not block (it
// queues the FIN behind what is unsent), and it comes once per connection
// at most: a submission would batch nothing worth having, and would be one
// more request in the kernel for the close to wait for, with a CQE to
// account and an opcode to probe for.
func (e *ringEngine) shutdownConn(u *uconn) {
	if u.flags.has(fClosing | fBroken | fShutDone) {
		return // a close, or a failed send's shutdown, goes further
	}
	if u.send != sendNone || u.flags.has(fSendNext) {
		// Package cport shuts down with no write in flight; should one be
		// in the kernel (or about to be) all the same, the FIN waits for
		// its CQE rather than cut it short.
		u.flags.set(fShutWant)
		return
	}
	u.flags.clear(fShutWant)
	u.flags.set(fShutDone)
	if err := e.shutdownSocket(int(u.fd), unix.SHUT_WR); err != nil {
		// No end of stream goes out: rather than leave the peer waiting
		// for one, the connection ends, its receive failing with the
		// error (the owner then closes it).
		e.endRecv(u, os.NewSyscallError("shutdown", err))
	}
}

// shutdownSocket is shutdown(2) of a connection's socket, on the loop.
func (e *ringEngine) shutdownSocket(fd, how int) error {
	if errno := e.b.cfg.Faults.Fail(engine.CallShutdown); errno != 0 {
		return errno
	}
	return unix.Shutdown(fd, how)
}

func (e *ringEngine) closeConnLoop(u *uconn, reset bool) {
	if reset && u.fd >= 0 {
		u.flags.set(fReset) // applies at the close, even after a graceful Close asked first
	}
	if u.flags.has(fClosing) {
		return
	}
	u.flags.set(fClosing)
	u.wr.Or(wrClosing) // a worker's write in progress: finishIfQuiet waits for it
	if (u.flags.has(fRecvOn) || u.send != sendNone) && !u.flags.has(fCanceled) {
		s := e.sqe()
		if u.flags.has(fRecvOn) || u.send != sendNone {
			s.PrepCancelFD(int(u.fd), uring.IORING_ASYNC_CANCEL_ALL)
			s.UserData = udata(ukCancel, u.gen, u.slot)
			u.flags.set(fCanceled | fCancelOn)
			e.inflight++
		} else {
			// A reap inside sqe completed them, and finished u: its
			// descriptor may be closed, even reused. The entry is spent.
			s.PrepNop()
			s.UserData = 0
		}
	}
	e.finishIfQuiet(u)
}

// finishIfQuiet closes a closing connection's socket and frees its slot
// once the kernel holds nothing of it.
func (e *ringEngine) finishIfQuiet(u *uconn) {
	if !u.flags.has(fClosing) || u.flags.has(fRecvOn|fSendNext|fCancelOn|fDropOn) || u.send != sendNone || u.fd < 0 {
		return
	}
	if u.wr.Load()&wrWriting != 0 {
		return // a worker writes the socket: it posts rqQuiet when done
	}
	// An armed receive the kernel no longer holds (starved, or never
	// armed) still ends with ErrCanceled.
	if u.c.RecvState().Armed {
		u.c.Deliver(nil, 0, engine.ErrCanceled)
	}
	e.closeSocket(u)
	u.fd = -1
	if u.flags.has(fStarving) {
		for i, x := range e.starved {
			if x == u {
				e.starved = append(e.starved[:i], e.starved[i+1:]...)
				break
			}
		}
		u.flags.clear(fStarving)
	}
	delete(e.recvErrs, u)
	e.conns[u.slot] = nil
	e.freeSlot = append(e.freeSlot, u.slot)
	e.held.Add(-1)
}

// closeSocket closes u's socket, on the loop, once the kernel holds no
// request of it. With a reset asked, SO_LINGER {on, 0} goes on just before
// the close: the close then sends an RST and frees the connection at once,
// dropping what is unsent, with no FIN-WAIT or TIME-WAIT state left behind.
// (Should the option fail, the close is a graceful one: nothing better is
// left to do.)
func (e *ringEngine) closeSocket(u *uconn) {
	if u.flags.has(fReset) {
		unix.SetsockoptLinger(int(u.fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	e.closeFD(int(u.fd))
}

// closeFD closes a socket: close(2), once. Its error is logged and nothing
// more: the descriptor is gone all the same (Linux frees it before it
// reports), and a second close could hit the number reused by another
// socket.
func (e *ringEngine) closeFD(fd int) {
	err := unix.Close(fd)
	if errno := e.b.cfg.Faults.Fail(engine.CallClose); errno != 0 {
		err = errno // the real close is done: act on the injected error as on a real one
	}
	if err != nil {
		e.b.cfg.Logger.Debug("cport: close failed", "fd", fd, "err", err)
	}
}

// The engine.Conn of a connection: requests go to the loop of its ring.

func (u *uconn) Recv() { u.e.post(ureq{op: rqRecv, u: u}, true) }

func (u *uconn) Release(b *engine.Buf) { u.e.recvReleased(b) }

func (u *uconn) Flush() {
	// While a worker runs, its sends wait for its Submit, so that each
	// connection's write carries all that the worker's batch queued: the
	// worker writes them (writeOut) or, on a port run to completion, the
	// loop that runs the handler submits them. A send from any other
	// goroutine wakes the loop at once. The connection is queued before
	// Hold looks at the workers, so that a Submit following the run that
	// Hold saw finds it.
	b := u.e.b
	if b.inline {
		u.e.post(ureq{op: rqFlush, u: u}, false)
		if !b.gate.Hold() {
			u.e.wake()
		}
		return
	}
	b.out.add(u)
	if !b.gate.Hold() {
		b.handOut() // no worker runs
	}
}

// Shutdown is handled by the loop, in the order of the connection's other
// requests: after a Close, it finds the connection closing and does
// nothing. Called from within SendDone on the loop itself, it is handled at
// the loop's next round.
func (u *uconn) Shutdown() { u.e.post(ureq{op: rqShutdown, u: u}, true) }

// Close is handled by the loop, which cancels what the kernel holds of the
// connection and closes the socket once its last CQE is in (finishIfQuiet),
// with SO_LINGER {1, 0} just before when reset is asked.
func (u *uconn) Close(reset bool) {
	op := rqClose
	if reset {
		op = rqReset
	}
	u.e.post(ureq{op: op, u: u}, true)
}

// The engine.Engine: listeners live in the first ring.

func (b *portEngine) Listen(network, address string, owner engine.ListenerOwner) (engine.Listener, error) {
	return b.rings[0].listen(network, address, owner)
}

// Submit starts the sends a worker's batch queued: a few it writes itself
// (a reply to a request), more it hands to the loops (a fan-out), which
// it wakes.
func (b *portEngine) Submit() {
	b.gate.Submitted()
	switch n := b.out.n.Load(); {
	case n == 0:
	case n <= writeInline:
		b.live.RLock()
		if !b.closed {
			b.writeOut()
		}
		b.live.RUnlock()
	default:
		b.handOut()
	}
	for _, e := range b.rings {
		if e.pending.Load() > 0 {
			e.wake()
		}
	}
}

// deferred reports whether writes wait for a Submit or requests for a
// loop.
func (b *portEngine) deferred() bool {
	if b.out.n.Load() > 0 {
		return true
	}
	for _, e := range b.rings {
		if e.pending.Load() > 0 {
			return true
		}
	}
	return false
}

func (b *portEngine) Stats() engine.Stats {
	st := engine.Stats{
		Writes:    b.sends.Load(),
		Wakes:     b.wakes.Load(),
		Loops:     len(b.rings),
		LoopConns: make([]int, len(b.rings)),
	}
	for i, e := range b.rings {
		st.LoopConns[i] = int(e.held.Load())
		st.Reaped += e.reaped.Load()
	}
	st.Overflows, st.Starved = b.overflows.Load(), b.starved.Load()
	return st
}

func (b *portEngine) Close() {
	b.gate.Stop() // no more wakes from its timer: the eventfds go
	b.live.Lock() // waits for the workers' writes in progress
	b.closed = true
	b.live.Unlock()
	b.stop()
}

// stop stops the loops, the first before the others: a connection it
// accepts while the port closes is closed at once, by a request to its own
// ring, which must still be there to take it.
func (b *portEngine) stop() {
	for _, e := range b.rings {
		e.post(ureq{op: rqStop}, true)
		<-e.done
	}
}
