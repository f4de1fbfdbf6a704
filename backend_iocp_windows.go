package cport

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// iocp is the engine on a real Windows I/O completion port.
//
// One completion port per cport Port, created with Config.Concurrency as its
// NumberOfConcurrentThreads. cport's workers do not dequeue from it: they
// wait on the port's common queue (queue.go), which enforces the
// concurrency cap itself. One engine goroutine (loop) waits on the
// completion port in GetQueuedCompletionStatusEx and turns each packet into
// cport completions (Conn.deliverRecv, Conn.sendDone, Listener.accepted), so
// the OS port's own cap never throttles anything: it only ever has one
// thread. Port.Post goes through the common queue too, as for every engine;
// the engine posts a packet of its own (stopKey) only to stop its goroutine.
//
// Completion keys: a socket's key is its slot in be.slots, an index and a
// generation, never a Go pointer. The slot keeps the socket's state, and so
// the OVERLAPPED structures embedded in it, reachable until the packet of
// every operation started on it has arrived (iocpSock.pending), however
// early the user drops the Conn: the kernel writes into an OVERLAPPED when
// the operation ends. A packet's OVERLAPPED address is only compared with
// those of the slot's operations, never turned back into a pointer.
//
// Receives: a zero-byte WSARecv waits for data, then the socket (in
// non-blocking mode) is drained with recv into buffers from the port's pool
// until WSAEWOULDBLOCK, so an idle connection pins no buffer. A multishot
// receive whose completion is out stops draining until its release.
//
// Sends: one WSASend in flight per socket, gathering everything queued on
// the connection (Conn.sendBatch) into one WSABUF array.
//
// Accepts: AcceptEx into a socket created beforehand, then
// SO_UPDATE_ACCEPT_CONTEXT so that getpeername, shutdown and the rest work
// on it.
//
// Closing a socket cancels its operations (CancelIoEx, then closesocket);
// their packets still arrive, with ERROR_OPERATION_ABORTED, and complete
// them with ErrCanceled. Closing the engine posts stopKey; the loop ends
// once every operation's packet has arrived, and then the completion port
// handle is closed. A GetQueuedCompletionStatusEx blocked on a completion
// port whose handle is closed returns ERROR_ABANDONED_WAIT_0 (documented in
// GetQueuedCompletionStatus); the loop ends on it too, though the engine
// itself closes the handle only after the loop has ended.
//
// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set where Go's internal/poll sets
// it (skipOnSuccess): an operation that completes at once then queues no
// packet and is finished by its caller.
//
// Closing a connection first reads and drops its unread input (a bounded
// amount), so that closesocket sends a FIN rather than a reset that would
// destroy what is still on its way to the peer.
//
// The loop's goroutine holds an OS thread while it waits in
// GetQueuedCompletionStatusEx, as Go's own netpoll on Windows does.
type iocp struct {
	p    *Port
	port windows.Handle
	skip bool
	done chan struct{} // closed when loop returns

	inflight atomic.Int64 // operations whose packet has not arrived

	mu       sync.Mutex // guards the fields below
	slots    []*iocpSock
	gens     []uint32
	free     []uint32
	stopping bool
}

// stopKey is the completion key of the packet that stops the engine's loop.
const stopKey = ^uintptr(0)

// maxIov caps the messages gathered into one WSASend.
const maxIov = 1024

// acceptAddrLen is the room AcceptEx needs per address: the largest
// sockaddr plus 16 bytes (AcceptEx's documentation).
const acceptAddrLen = uint32(unsafe.Sizeof(windows.RawSockaddrAny{})) + 16

// iocpOp is one operation's OVERLAPPED, kept by its socket.
type iocpOp struct {
	o   windows.Overlapped
	qty uint32 // bytes, when the call completes at once
}

// iocpSock is a socket's engine state: a Conn's or a Listener's sys.
type iocpSock struct {
	be   *iocp
	conn *Conn     // set once, before the socket is published
	ln   *Listener // set once, for a listening socket
	rop  iocpOp    // the zero-byte receive
	wop  iocpOp    // the send
	aop  iocpOp    // the accept
	skip bool      // FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set on h; set by register, before publishing

	mu      sync.Mutex // guards the fields below; a leaf: nothing is called into cport under it
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
	broken      bool  // a send failed: the receive ends with the send's error
	zb          byte  // the zero-byte receive's buffer

	// Send (conn): owned by the goroutine writing (Conn.sending).
	iov  [][]byte
	bufs []windows.WSABuf

	// Accept (listener): owned by the goroutine accepting (Listener.accepting).
	family int32
	as     windows.Handle
	abuf   [2 * acceptAddrLen]byte
	pause  time.Duration
}

func init() {
	registerBackend(backendInfo{name: "iocp", rank: rankKernel, open: openIOCP})
}

func openIOCP(p *Port) (backend, error) {
	if err := wsaInit(); err != nil {
		return nil, fmt.Errorf("cport: iocp: WSAStartup: %w (%w)", err, ErrUnavailable)
	}
	if err := procGetQueuedCompletionStatusEx.Find(); err != nil {
		return nil, fmt.Errorf("cport: iocp: %w (%w)", err, ErrUnavailable)
	}
	port, err := windows.CreateIoCompletionPort(windows.InvalidHandle, 0, 0, uint32(p.cfg.Concurrency))
	if err != nil {
		return nil, fmt.Errorf("cport: iocp: CreateIoCompletionPort: %w (%w)", err, ErrUnavailable)
	}
	be := &iocp{p: p, port: port, skip: skipOnSuccess(), done: make(chan struct{})}
	go be.loop()
	return be, nil
}

// ---------------------------------------------------------------------------
// Slots.

// register gives s a slot and associates h with the completion port under
// its key.
func (be *iocp) register(s *iocpSock, h windows.Handle) error {
	be.mu.Lock()
	var idx uint32
	if n := len(be.free); n > 0 {
		idx = be.free[n-1]
		be.free = be.free[:n-1]
	} else {
		idx = uint32(len(be.slots))
		be.slots = append(be.slots, nil)
		be.gens = append(be.gens, 0)
	}
	be.gens[idx]++
	be.slots[idx] = s
	key := uintptr(be.gens[idx])<<32 | uintptr(idx)
	be.mu.Unlock()
	s.be, s.h, s.key = be, h, key
	if _, err := windows.CreateIoCompletionPort(h, be.port, key, 0); err != nil {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.release()
		return err
	}
	// FILE_SKIP_SET_EVENT_ON_HANDLE too, as internal/poll does: nobody
	// waits on the handle itself. Should the call fail, this socket's
	// operations queue a packet even when they complete at once.
	s.skip = be.skip && windows.SetFileCompletionNotificationModes(h,
		windows.FILE_SKIP_COMPLETION_PORT_ON_SUCCESS|windows.FILE_SKIP_SET_EVENT_ON_HANDLE) == nil
	return nil
}

func (be *iocp) lookup(key uintptr) *iocpSock {
	idx, gen := uint32(key), uint32(key>>32)
	be.mu.Lock()
	defer be.mu.Unlock()
	if int(idx) >= len(be.slots) || be.gens[idx] != gen {
		return nil
	}
	return be.slots[idx]
}

// release frees s's slot once s is closed and no packet is awaited.
func (s *iocpSock) release() {
	s.mu.Lock()
	if !s.closed || s.pending > 0 || s.freed {
		s.mu.Unlock()
		return
	}
	s.freed = true
	idx := uint32(s.key)
	s.mu.Unlock()
	be := s.be
	be.mu.Lock()
	if int(idx) < len(be.slots) && be.slots[idx] == s {
		be.slots[idx] = nil
		be.free = append(be.free, idx)
	}
	be.mu.Unlock()
}

// startLocked starts an overlapped operation with s.mu held. done says it
// finished at once and no packet follows (it failed, or succeeded with
// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS); otherwise its packet will come.
func (s *iocpSock) startLocked(op *iocpOp, call func(o *windows.Overlapped) error) (done bool, err error) {
	op.o = windows.Overlapped{}
	op.qty = 0
	s.pending++
	s.be.inflight.Add(1)
	err = call(&op.o)
	switch {
	case err == nil && s.skip:
	case err == nil || err == windows.ERROR_IO_PENDING:
		return false, nil
	}
	s.pending--
	s.be.inflight.Add(-1)
	return true, err
}

// ---------------------------------------------------------------------------
// The loop.

func (be *iocp) loop() {
	defer close(be.done)
	ents := make([]overlappedEntry, 64)
	stopping := false
	var giveUp time.Time
	for {
		timeout := uint32(windows.INFINITE)
		if stopping {
			if be.inflight.Load() <= 0 {
				return
			}
			if time.Now().After(giveUp) {
				// A packet that never comes (should not happen): stop all the
				// same. The sockets' state stays reachable from be.slots, so
				// no OVERLAPPED or buffer is ever freed under the kernel.
				be.p.log.Warn("cport: iocp: stopping with operations in flight", "inflight", be.inflight.Load())
				return
			}
			timeout = 100
		}
		n, err := getQueuedCompletionStatusEx(be.port, ents, timeout)
		if err != nil {
			switch err {
			case windows.WAIT_TIMEOUT:
				continue
			case windows.ERROR_ABANDONED_WAIT_0, windows.ERROR_INVALID_HANDLE:
				return // the port's handle was closed
			}
			be.p.log.Error("cport: iocp: GetQueuedCompletionStatusEx", "err", err)
			return
		}
		for i := range ents[:n] {
			e := &ents[i]
			if e.key == stopKey && e.ov == 0 {
				stopping = true
				giveUp = time.Now().Add(10 * time.Second)
				continue
			}
			be.complete(e)
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

func (be *iocp) complete(e *overlappedEntry) {
	s := be.lookup(e.key)
	if s == nil {
		be.p.log.Error("cport: iocp: packet for an unknown key", "key", e.key)
		return
	}
	var op *iocpOp
	switch e.ov {
	case uintptr(unsafe.Pointer(&s.rop.o)):
		op = &s.rop
	case uintptr(unsafe.Pointer(&s.wop.o)):
		op = &s.wop
	case uintptr(unsafe.Pointer(&s.aop.o)):
		op = &s.aop
	default:
		be.p.log.Error("cport: iocp: packet for an unknown operation", "key", e.key)
		return
	}
	err := opErr(&op.o)
	s.mu.Lock()
	s.pending--
	s.mu.Unlock()
	be.inflight.Add(-1)
	switch op {
	case &s.rop:
		be.readDone(s, err)
	case &s.wop:
		if be.sendResult(s, int(e.qty), err) {
			be.write(s)
		}
	case &s.aop:
		if be.acceptResult(s, err) {
			be.acceptNext(s)
		}
	}
	s.release()
}

// ---------------------------------------------------------------------------
// Listening and accepting.

func (be *iocp) listen(l *Listener, network, address string) error {
	be.mu.Lock()
	stopping := be.stopping
	be.mu.Unlock()
	if stopping {
		return ErrClosed
	}
	lerr := func(err error) error {
		return &OpError{Op: "listen", Backend: "iocp", Err: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return lerr(net.UnknownNetworkError(network))
	}
	ta, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return lerr(err)
	}
	ip4 := ta.IP.To4()
	family := int32(windows.AF_INET6)
	dual := false
	switch {
	case network == "tcp4" || (ip4 != nil && network == "tcp"):
		family = windows.AF_INET
	case network == "tcp" && (ta.IP == nil || ta.IP.IsUnspecified()):
		dual = true // [::] accepting IPv4 too, as Go's net does
	}
	if family == windows.AF_INET && ta.IP != nil && ip4 == nil {
		return lerr(&net.AddrError{Err: "not an IPv4 address", Addr: ta.IP.String()})
	}
	h, err := windows.WSASocket(family, windows.SOCK_STREAM, windows.IPPROTO_TCP, nil, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
	if err != nil && dual {
		family, dual = windows.AF_INET, false // no IPv6 here
		h, err = windows.WSASocket(family, windows.SOCK_STREAM, windows.IPPROTO_TCP, nil, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
	}
	if err != nil {
		return lerr(winErr("wsasocket", err))
	}
	var sa windows.Sockaddr
	if family == windows.AF_INET {
		a := &windows.SockaddrInet4{Port: ta.Port}
		if ip4 != nil {
			copy(a.Addr[:], ip4)
		}
		sa = a
	} else {
		a := &windows.SockaddrInet6{Port: ta.Port}
		if ta.IP != nil {
			copy(a.Addr[:], ta.IP.To16())
		}
		if ta.Zone != "" {
			if ifi, err := net.InterfaceByName(ta.Zone); err == nil {
				a.ZoneId = uint32(ifi.Index)
			}
		}
		sa = a
		if dual {
			windows.SetsockoptInt(h, windows.IPPROTO_IPV6, windows.IPV6_V6ONLY, 0)
		}
	}
	if err := windows.Bind(h, sa); err != nil {
		windows.Closesocket(h)
		return lerr(winErr("bind", err))
	}
	if err := windows.Listen(h, windows.SOMAXCONN); err != nil {
		windows.Closesocket(h)
		return lerr(winErr("listen", err))
	}
	s := &iocpSock{ln: l, family: family}
	if err := be.register(s, h); err != nil {
		windows.Closesocket(h)
		return lerr(winErr("CreateIoCompletionPort", err))
	}
	l.sys = s
	l.addr, _ = sockAddrs(h)
	return nil
}

func (be *iocp) accept(l *Listener) error {
	be.acceptNext(l.sys.(*iocpSock))
	return nil
}

// acceptNext starts AcceptEx on s, and finishes the accepts that complete
// at once, until one is pending or accepting ends.
func (be *iocp) acceptNext(s *iocpSock) {
	l := s.ln
	for {
		as, err := windows.WSASocket(s.family, windows.SOCK_STREAM, windows.IPPROTO_TCP, nil, 0, windows.WSA_FLAG_OVERLAPPED|windows.WSA_FLAG_NO_HANDLE_INHERIT)
		if err != nil {
			// Out of sockets or memory (WSAEMFILE, WSAENOBUFS): report it and
			// try again after a pause, as AcceptMulti promises.
			if !l.acceptFailed(&OpError{Op: "accept", Backend: "iocp", Addr: l.Addr(), Err: winErr("wsasocket", err)}, false) {
				return
			}
			s.pause = nextAcceptPause(s.pause)
			time.AfterFunc(s.pause, func() { be.acceptNext(s) })
			return
		}
		s.pause = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			windows.Closesocket(as)
			l.acceptFailed(ErrCanceled, true)
			return
		}
		s.as = as
		done, err := s.startLocked(&s.aop, func(o *windows.Overlapped) error {
			return windows.AcceptEx(s.h, as, &s.abuf[0], 0, acceptAddrLen, acceptAddrLen, &s.aop.qty, o)
		})
		s.mu.Unlock()
		if !done {
			return
		}
		if !be.acceptResult(s, err) {
			return
		}
	}
}

// acceptResult finishes an AcceptEx that ended with err, and reports
// whether to go on accepting.
func (be *iocp) acceptResult(s *iocpSock, err error) bool {
	l := s.ln
	s.mu.Lock()
	as, closed := s.as, s.closed
	s.as = 0
	var uerr error
	if err == nil && !closed {
		// Give the accepted socket the listener's properties; without it
		// getpeername, getsockname and shutdown fail on it (AcceptEx's
		// documentation). Under s.mu: s.h stays open meanwhile.
		lh := s.h
		uerr = windows.Setsockopt(as, windows.SOL_SOCKET, windows.SO_UPDATE_ACCEPT_CONTEXT, (*byte)(unsafe.Pointer(&lh)), int32(unsafe.Sizeof(lh)))
	}
	s.mu.Unlock()
	if err != nil {
		windows.Closesocket(as)
		switch {
		case closed || err == windows.ERROR_OPERATION_ABORTED:
			return l.acceptFailed(ErrCanceled, true)
		}
		// A client that reset before AcceptEx completed ends it with an
		// error (ERROR_NETNAME_DELETED on Windows; Wine says
		// ERROR_UNEXP_NET_ERR): reported, and accepting goes on.
		return l.acceptFailed(&OpError{Op: "accept", Backend: "iocp", Addr: l.Addr(), Err: winErr("acceptex", err)}, false)
	}
	if uerr != nil {
		windows.Closesocket(as)
		return l.acceptFailed(&OpError{Op: "accept", Backend: "iocp", Addr: l.Addr(), Err: winErr("setsockopt", uerr)}, false)
	}
	if err := setNonblock(as); err != nil {
		windows.Closesocket(as)
		return l.acceptFailed(&OpError{Op: "accept", Backend: "iocp", Addr: l.Addr(), Err: winErr("ioctlsocket", err)}, false)
	}
	cs := &iocpSock{}
	if err := be.register(cs, as); err != nil {
		windows.Closesocket(as)
		return l.acceptFailed(&OpError{Op: "accept", Backend: "iocp", Addr: l.Addr(), Err: winErr("CreateIoCompletionPort", err)}, false)
	}
	local, remote := acceptAddrs(&s.abuf)
	if local == nil || remote == nil {
		local, remote = sockAddrs(as)
	}
	c := newConn(be.p, cs, local, remote)
	cs.conn = c
	return l.accepted(c)
}

// acceptAddrs reads the addresses AcceptEx left in buf. Unlike getpeername,
// it knows the peer of a connection already reset.
func acceptAddrs(buf *[2 * acceptAddrLen]byte) (local, remote net.Addr) {
	var l, r *windows.RawSockaddrAny
	var ll, rl int32
	windows.GetAcceptExSockaddrs(&buf[0], 0, acceptAddrLen, acceptAddrLen, &l, &ll, &r, &rl)
	if l != nil {
		if sa, err := l.Sockaddr(); err == nil {
			local = sockaddrTCP(sa)
		}
	}
	if r != nil {
		if sa, err := r.Sockaddr(); err == nil {
			remote = sockaddrTCP(sa)
		}
	}
	return local, remote
}

func (be *iocp) closeListener(l *Listener) {
	if s, ok := l.sys.(*iocpSock); ok {
		be.closeSock(s)
	}
}

// closeSock cancels s's operations and closes it; their packets still
// come, and release frees the slot after the last.
func (be *iocp) closeSock(s *iocpSock) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	windows.CancelIoEx(s.h, nil)
	if s.conn != nil {
		be.discardInput(s.h)
	}
	windows.Closesocket(s.h)
	s.mu.Unlock()
	s.release()
}

// discardInput reads and drops what is waiting unread on a connection
// about to be closed, up to a bound: a socket closed with unread input is
// reset instead of shut down gracefully (RFC 2525, 2.17, which Windows and
// Linux both follow), and a reset destroys the data still on its way to the
// peer.
func (be *iocp) discardInput(h windows.Handle) {
	b := be.p.recv.get()
	defer be.p.recv.put(b)
	for range 64 {
		if n, err := recvNonblock(h, b.b); n <= 0 || err != nil {
			return
		}
	}
}

// ---------------------------------------------------------------------------
// Receiving.

func (be *iocp) recv(c *Conn) error {
	be.pump(c.sys.(*iocpSock))
	return nil
}

func (be *iocp) recvReleased(c *Conn, b *recvBuf) {
	if b != nil {
		be.p.recv.put(b)
	}
	be.pump(c.sys.(*iocpSock))
}

// portClosed reports whether the port's queue is closed.
func (be *iocp) portClosed() bool {
	q := &be.p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

func (be *iocp) readDone(s *iocpSock, err error) {
	s.mu.Lock()
	s.readPending = false
	if err != nil && err != windows.ERROR_OPERATION_ABORTED && s.readErr == nil {
		s.readErr = winErr("wsarecv", err)
	}
	s.mu.Unlock()
	be.pump(s)
}

// pump moves c's receive on as far as it can without waiting; one goroutine
// at a time runs it, and a call while the zero-byte receive is pending does
// nothing (its packet calls pump).
func (be *iocp) pump(s *iocpSock) {
	s.mu.Lock()
	if s.pumping || s.readPending {
		s.again = true
		s.mu.Unlock()
		return
	}
	s.pumping = true
	s.mu.Unlock()
	for {
		be.pumpOnce(s)
		s.mu.Lock()
		if s.again && !s.readPending {
			s.again = false
			s.mu.Unlock()
			continue
		}
		s.again, s.pumping = false, false
		s.mu.Unlock()
		return
	}
}

func (be *iocp) pumpOnce(s *iocpSock) {
	c := s.conn
	for {
		_, ready, closed := c.recvState()
		switch {
		case !ready:
			return
		case closed:
			c.deliverRecv(nil, 0, ErrCanceled)
			continue
		case be.portClosed():
			// Every completion is dropped, and released at once: draining
			// would go on as long as the peer writes. Port.Close closes c
			// next, which ends the receive.
			return
		}
		s.mu.Lock()
		if s.broken {
			s.mu.Unlock()
			c.deliverRecv(nil, 0, io.EOF) // becomes the send's error (Conn.err)
			continue
		}
		if s.closed {
			s.mu.Unlock()
			return // c.close is on its way: its recvState says closed soon
		}
		if rerr := s.readErr; rerr != nil {
			// The zero-byte receive failed: a reset, whose data the stack
			// discards anyway. Report it before reading, for a stack may
			// report a socket's error only once (Wine over Linux does).
			s.readErr = nil
			s.mu.Unlock()
			c.deliverRecv(nil, 0, rerr)
			continue
		}
		b := be.p.recv.get()
		n, err := recvNonblock(s.h, b.b)
		if err == windows.WSAEWOULDBLOCK {
			be.p.recv.put(b)
			// Nothing to read: wait for data with a zero-byte receive, which
			// pins no buffer.
			s.readPending = true
			done, err := s.startLocked(&s.rop, func(o *windows.Overlapped) error {
				var flags uint32
				buf := windows.WSABuf{Len: 0, Buf: &s.zb}
				return windows.WSARecv(s.h, &buf, 1, &s.rop.qty, &flags, o, nil)
			})
			if done {
				s.readPending = false
			}
			s.mu.Unlock()
			if !done {
				return
			}
			if err != nil {
				c.deliverRecv(nil, 0, winErr("wsarecv", err))
			}
			continue // data (or the end) is there already
		}
		s.mu.Unlock()
		switch {
		case n > 0:
			c.deliverRecv(b, n, nil)
		case err == nil:
			be.p.recv.put(b)
			c.deliverRecv(nil, 0, io.EOF)
		default:
			be.p.recv.put(b)
			c.deliverRecv(nil, 0, winErr("recv", err))
		}
	}
}

// ---------------------------------------------------------------------------
// Sending.

func (be *iocp) flush(c *Conn) { be.write(c.sys.(*iocpSock)) }

// write starts a WSASend of everything queued on s's connection, and goes on
// while sends complete at once and more is queued.
func (be *iocp) write(s *iocpSock) {
	c := s.conn
	for {
		s.iov = c.sendBatch(s.iov[:0], maxIov)
		s.bufs = s.bufs[:0]
		for _, b := range s.iov {
			s.bufs = append(s.bufs, windows.WSABuf{Len: uint32(len(b)), Buf: unsafe.SliceData(b)})
		}
		s.mu.Lock()
		if s.closed || len(s.bufs) == 0 {
			s.mu.Unlock()
			if !c.sendDone(0, ErrCanceled) {
				return
			}
			continue
		}
		// Winsock captures the WSABUF array during the call; the bytes
		// themselves stay queued (and referenced) until sendDone.
		done, err := s.startLocked(&s.wop, func(o *windows.Overlapped) error {
			return windows.WSASend(s.h, &s.bufs[0], uint32(len(s.bufs)), &s.wop.qty, 0, o, nil)
		})
		n := int(s.wop.qty)
		s.mu.Unlock()
		if !done {
			return
		}
		if !be.sendResult(s, n, err) {
			return
		}
	}
}

// sendResult accounts for a WSASend that wrote n bytes and ended with err,
// and reports whether more is queued to write.
func (be *iocp) sendResult(s *iocpSock, n int, err error) bool {
	if err != nil {
		err = winErr("wsasend", err)
	}
	more := s.conn.sendDone(n, err)
	if err != nil && s.conn.broken() != nil {
		// The connection is broken: end the receive with the send's error.
		s.mu.Lock()
		s.broken = true
		if !s.closed {
			windows.Shutdown(s.h, windows.SHUT_RDWR)
			if s.readPending {
				windows.CancelIoEx(s.h, &s.rop.o)
			}
		}
		s.mu.Unlock()
		be.pump(s)
	}
	return more
}

func (be *iocp) submit() {} // every write starts at once; queued ones gather behind it

func (be *iocp) closeConn(c *Conn) {
	s := c.sys.(*iocpSock)
	be.closeSock(s)
	be.pump(s) // an armed receive with nothing pending ends now
}

func (be *iocp) close() {
	be.mu.Lock()
	first := !be.stopping
	be.stopping = true
	be.mu.Unlock()
	if first {
		if err := windows.PostQueuedCompletionStatus(be.port, 0, stopKey, nil); err != nil {
			// Cannot tell the loop: closing the handle ends its wait with
			// ERROR_ABANDONED_WAIT_0.
			windows.CloseHandle(be.port)
			<-be.done
			return
		}
	}
	<-be.done
	if first {
		windows.CloseHandle(be.port)
	}
}
