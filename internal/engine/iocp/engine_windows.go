package iocp

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
)

// eng is the engine of one port, on one completion port.
type eng struct {
	cfg  engine.Config
	port windows.Handle
	skip bool
	bufs *engine.BufPool
	done chan struct{} // closed when loop returns

	inflight atomic.Int64  // operations whose packet has not arrived
	writes   atomic.Uint64 // WSASend calls

	mu       sync.Mutex // guards the fields below
	slots    []*sock
	gens     []uint32
	free     []uint32
	stopping bool
	dials    map[*sock]struct{} // sockets whose ConnectEx is in progress, for Close to cancel
}

// stopKey is the completion key of the packet that stops the engine's loop.
const stopKey = ^uintptr(0)

// maxIov caps the messages gathered into one WSASend.
const maxIov = 1024

// acceptAddrLen is the room AcceptEx needs per address: the largest
// sockaddr plus 16 bytes (AcceptEx's documentation).
const acceptAddrLen = uint32(unsafe.Sizeof(windows.RawSockaddrAny{})) + 16

// op is one overlapped operation of a socket: its OVERLAPPED, and the
// Pinner that pins what the kernel uses until its packet.
type op struct {
	o   windows.Overlapped
	qty uint32         // bytes, when the call completes at once
	pin runtime.Pinner // pinned by startLocked, unpinned by complete (or by startLocked if no packet follows)
}

// sock is a socket's engine state: a connection's (as conn) or a
// listener's (as listener).
type sock struct {
	e      *eng
	conn   engine.ConnOwner     // a connection's owner: set before the socket is published
	ln     engine.ListenerOwner // a listener's owner: set by Listen
	laddr  net.Addr             // a listener's address: set by Listen
	dial   *dialState           // a dialed connection's: set by Dial, before the socket is published
	pkt    *packetState         // a datagram socket's: set by ListenPacket
	family int32                // a listener's address family: set by Listen
	rop    op                   // the zero-byte receive
	wop    op                   // the send
	aop    op                   // the accept; a dialed connection's ConnectEx
	skip   bool                 // FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set on h; set by register, before publishing

	mu      sync.Mutex // guards the fields below; a leaf: no owner is called under it
	h       windows.Handle
	key     uintptr
	closed  bool // h is closed
	freed   bool // the slot is free again
	pending int  // operations started whose packet is awaited

	// Receive (conn): at most one goroutine runs pump at a time (pumping);
	// a call meanwhile sets again, so that the running one looks again.
	readPending bool
	pumping     bool
	again       bool
	readErr     error // what the zero-byte receive ended with, reported once drained
	broken      bool  // a send or the shutdown failed: the receive ends with brokenErr
	brokenErr   error // the shutdown's error, or nil: the owner reports the send's (ConnOwner.Broken)
	zb          byte  // the zero-byte receive's buffer

	// Send (conn): owned by the goroutine writing.
	iov  [][]byte
	bufs []windows.WSABuf

	// Accept (listener): owned by the goroutine accepting.
	as    windows.Handle
	abuf  [2 * acceptAddrLen]byte
	pause time.Duration
	timer *time.Timer // a paused accept's; set and stopped under mu
}

// conn is a connection's sock as package cport sees it (engine.Conn).
type conn sock

// listener is a listener's sock as package cport sees it (engine.Listener).
type listener sock

// Open starts an engine on a new completion port. A system that lacks
// Winsock 2.2, GetQueuedCompletionStatusEx or completion ports is
// reported wrapping engine.ErrUnavailable.
func Open(cfg engine.Config) (engine.Engine, error) {
	if err := wsaInit(); err != nil {
		return nil, fmt.Errorf("%w: iocp: WSAStartup: %w", engine.ErrUnavailable, err)
	}
	if err := procGetQueuedCompletionStatusEx.Find(); err != nil {
		return nil, fmt.Errorf("%w: iocp: %w", engine.ErrUnavailable, err)
	}
	port, err := windows.CreateIoCompletionPort(windows.InvalidHandle, 0, 0, uint32(cfg.Concurrency))
	if err != nil {
		return nil, fmt.Errorf("%w: iocp: CreateIoCompletionPort: %w", engine.ErrUnavailable, err)
	}
	e := &eng{
		cfg:   cfg,
		port:  port,
		skip:  skipOnSuccess(),
		bufs:  engine.NewBufPool(cfg.RecvBufferSize),
		done:  make(chan struct{}),
		dials: make(map[*sock]struct{}),
	}
	go e.loop()
	return e, nil
}

// Stats returns the engine's counters: its WSASend calls and its one loop.
func (e *eng) Stats() engine.Stats {
	return engine.Stats{Writes: e.writes.Load(), Loops: 1}
}

// Submit does nothing: every write starts at once, and what is queued
// meanwhile gathers behind it.
func (e *eng) Submit() {}

// ---------------------------------------------------------------------------
// Slots.

// register gives s a slot and associates h with the completion port under
// its key.
func (e *eng) register(s *sock, h windows.Handle) error {
	e.mu.Lock()
	var idx uint32
	if n := len(e.free); n > 0 {
		idx = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		idx = uint32(len(e.slots))
		e.slots = append(e.slots, nil)
		e.gens = append(e.gens, 0)
	}
	e.gens[idx]++
	e.slots[idx] = s
	key := uintptr(e.gens[idx])<<32 | uintptr(idx)
	e.mu.Unlock()
	s.e, s.h, s.key = e, h, key
	err := e.fail(engine.CallPoll)
	if err == nil {
		_, err = windows.CreateIoCompletionPort(h, e.port, key, 0)
	}
	if err != nil {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.release()
		return err
	}
	// FILE_SKIP_SET_EVENT_ON_HANDLE too, as internal/poll does: nobody
	// waits on the handle itself. Should the call fail, this socket's
	// operations queue a packet even when they complete at once.
	s.skip = e.skip && windows.SetFileCompletionNotificationModes(h,
		windows.FILE_SKIP_COMPLETION_PORT_ON_SUCCESS|windows.FILE_SKIP_SET_EVENT_ON_HANDLE) == nil
	return nil
}

func (e *eng) lookup(key uintptr) *sock {
	idx, gen := uint32(key), uint32(key>>32)
	e.mu.Lock()
	defer e.mu.Unlock()
	if int(idx) >= len(e.slots) || e.gens[idx] != gen {
		return nil
	}
	return e.slots[idx]
}

// release frees s's slot once s is closed and no packet is awaited.
func (s *sock) release() {
	s.mu.Lock()
	if !s.closed || s.pending > 0 || s.freed {
		s.mu.Unlock()
		return
	}
	s.freed = true
	idx := uint32(s.key)
	s.mu.Unlock()
	e := s.e
	e.mu.Lock()
	if int(idx) < len(e.slots) && e.slots[idx] == s {
		e.slots[idx] = nil
		e.free = append(e.free, idx)
	}
	e.mu.Unlock()
}

// startLocked starts an overlapped operation with s.mu held. done says it
// finished at once and no packet follows (it failed, or succeeded with
// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS); otherwise its packet will come.
// It pins s, which holds op, for the kernel until then; the caller may
// have pinned more with op.pin (the send's WSABUFs and bytes), unpinned
// with it.
//
// A call that fails at once with a warning status (STATUS_BUFFER_OVERFLOW:
// a datagram longer than the buffer, WSAEMSGSIZE) did complete: the kernel
// wrote the OVERLAPPED's status block, and queues a packet as for a
// success, unless the socket skips them. Then done is true and op.qty the
// bytes the status block reports, for Winsock need not write the count of
// a call that returns an error (Wine's does not).
func (s *sock) startLocked(op *op, call func(o *windows.Overlapped) error) (done bool, err error) {
	op.o = windows.Overlapped{}
	op.qty = 0
	op.pin.Pin(s)
	s.pending++
	s.e.inflight.Add(1)
	err = call(&op.o)
	switch {
	case err == nil && s.skip:
	case err == nil || err == windows.ERROR_IO_PENDING:
		return false, nil
	case warned(&op.o) && !s.skip:
		return false, nil
	case warned(&op.o):
		op.qty = uint32(op.o.InternalHigh)
	}
	op.pin.Unpin()
	s.pending--
	s.e.inflight.Add(-1)
	return true, err
}

// warned reports whether the kernel completed o with a warning status
// (severity 2: STATUS_BUFFER_OVERFLOW and the like), which Win32 reports
// as an error, but which is no failure of the call. An error injected
// before the call (Config.Faults) leaves o's status zero, a success.
func warned(o *windows.Overlapped) bool {
	return windows.NTStatus(o.Internal)>>30 == 2
}

// ---------------------------------------------------------------------------
// The loop.

// abandoned keeps for ever the engines whose loop ended with operations
// in flight (see loop): the kernel may still write into their sockets'
// OVERLAPPEDs, which stay pinned, so they must never be freed.
var abandoned struct {
	sync.Mutex
	engs []*eng
}

func (e *eng) loop() {
	defer close(e.done)
	defer func() {
		if e.inflight.Load() > 0 {
			abandoned.Lock()
			abandoned.engs = append(abandoned.engs, e)
			abandoned.Unlock()
		}
	}()
	ents := make([]overlappedEntry, 64)
	stopping := false
	var giveUp time.Time
	for {
		timeout := uint32(windows.INFINITE)
		if stopping {
			if e.inflight.Load() <= 0 {
				return
			}
			if time.Now().After(giveUp) {
				// A packet that never comes (should not happen): stop all the
				// same. The engine, and so every socket of its slots, is then
				// kept reachable for good (abandoned), so that no OVERLAPPED
				// or buffer is ever freed under the kernel.
				e.cfg.Logger.Warn("cport: iocp: stopping with operations in flight", "inflight", e.inflight.Load())
				return
			}
			timeout = 100
		}
		n, err := getQueuedCompletionStatusEx(e.port, ents, timeout)
		if err != nil {
			switch err {
			case windows.WAIT_TIMEOUT:
				continue
			case windows.ERROR_ABANDONED_WAIT_0, windows.ERROR_INVALID_HANDLE:
				return // the port's handle was closed
			}
			e.cfg.Logger.Error("cport: iocp: GetQueuedCompletionStatusEx", "err", err)
			return
		}
		for i := range ents[:n] {
			ent := &ents[i]
			if ent.key == stopKey && ent.ov == 0 {
				stopping = true
				giveUp = time.Now().Add(10 * time.Second)
				continue
			}
			e.complete(ent)
		}
	}
}

// opErr returns the error an operation's packet reports, from the NTSTATUS
// the kernel left in its OVERLAPPED.
func opErr(o *windows.Overlapped) error {
	st := windows.NTStatus(o.Internal)
	if st == windows.STATUS_SUCCESS {
		return nil
	}
	return st.Errno()
}

func (e *eng) complete(ent *overlappedEntry) {
	s := e.lookup(ent.key)
	if s == nil {
		e.cfg.Logger.Error("cport: iocp: packet for an unknown key", "key", ent.key)
		return
	}
	var op *op
	switch ent.ov {
	case uintptr(unsafe.Pointer(&s.rop.o)):
		op = &s.rop
	case uintptr(unsafe.Pointer(&s.wop.o)):
		op = &s.wop
	case uintptr(unsafe.Pointer(&s.aop.o)):
		op = &s.aop
	default:
		e.cfg.Logger.Error("cport: iocp: packet for an unknown operation", "key", ent.key)
		return
	}
	err := opErr(&op.o)
	s.mu.Lock()
	op.pin.Unpin() // the kernel is done with the operation's memory
	s.pending--
	s.mu.Unlock()
	e.inflight.Add(-1)
	switch {
	case s.pkt != nil && op == &s.rop:
		e.packetRecvDone(s, int(ent.qty), err)
	case s.pkt != nil && op == &s.wop:
		e.packetSendDone(s, err)
	case op == &s.rop:
		e.readDone(s, err)
	case op == &s.wop:
		if e.sendResult(s, int(ent.qty), err) {
			e.write(s)
		}
	case op == &s.aop:
		if s.dial != nil {
			e.connectResult(s, err)
		} else if e.acceptResult(s, err) {
			e.acceptNext(s)
		}
	}
	s.release()
}

// ---------------------------------------------------------------------------
// Closing.

// closeSock cancels s's operations and closes it; their packets still
// come, and release frees the slot after the last. With reset (a
// connection's abortive close), SO_LINGER {on, 0 seconds} first: closesocket
// then resets the connection and discards what is unsent ("Graceful
// Shutdown, Linger Options, and Socket Closure", and SO_LINGER in
// closesocket's documentation). Without, the unread input is dropped first
// (discardInput), so that the close stays graceful: the stack still sends
// what the connection wrote, then a FIN.
func (e *eng) closeSock(s *sock, reset bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if reset {
		// Best effort: should it fail, the close below is graceful.
		windows.SetsockoptLinger(s.h, windows.SOL_SOCKET, windows.SO_LINGER, &windows.Linger{Onoff: 1, Linger: 0})
	}
	windows.CancelIoEx(s.h, nil)
	if s.conn != nil && !reset {
		e.discardInput(s.h)
	}
	e.closesocket(s.h)
	// A paused accept has no packet to end it: when its timer is stopped
	// before it fired, the accept ends here.
	paused := s.timer != nil && s.timer.Stop()
	s.mu.Unlock()
	if paused {
		s.ln.AcceptFailed(engine.ErrCanceled, true)
	}
	s.release()
}

// Close stops the loop once every operation's packet has arrived, then
// closes the completion port.
func (e *eng) Close() {
	e.mu.Lock()
	first := !e.stopping
	e.stopping = true
	e.mu.Unlock()
	if first {
		e.endDials() // their packets come, and the loop ends after them
		if err := windows.PostQueuedCompletionStatus(e.port, 0, stopKey, nil); err != nil {
			// Cannot tell the loop: closing the handle ends its wait with
			// ERROR_ABANDONED_WAIT_0.
			windows.CloseHandle(e.port)
			<-e.done
			return
		}
	}
	<-e.done
	if first {
		windows.CloseHandle(e.port)
	}
}
