package cport

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"cport.dev/cport/internal/engine"
)

// A Conn is a connection associated with a port, accepted by a Listener or
// dialed with Port.Dial. Its receives and sends complete into the port's
// queue under its completion key. Its methods are safe for concurrent use.
type Conn struct {
	p     *Port
	key   atomic.Uint64
	io    engine.Conn // the engine's side; set before the Conn is published
	laddr *localAddr  // shared with the listener's other connections; read-only
	// rip is the peer's IP address, as 16 bytes (netip.Addr.As16), and
	// rport, below, its port: of laddr's family (IPv4, or IPv6 for an
	// IPv6 socket's, which may hold IPv4 peers, mapped). A peer address
	// that has no place here (a Unix socket's, a zoned one, one of
	// another family) is in laddr.other instead (see newConn). Set before
	// the Conn is published; read-only.
	rip [16]byte
	// value is the user's data (SetValue): any goroutine stores and loads
	// it. A pointer to an interface, one word: an idle connection that
	// has none costs no more.
	value atomic.Pointer[any]

	prev, next *Conn // in the port's list of connections, guarded by Port.mu

	// queued mirrors the bytes accepted by Send and not yet written, for
	// Queued to read without the lock; written under mu.
	queued atomic.Int64
	// written counts the bytes written to the socket, for Written; added
	// to in SendDone.
	written atomic.Int64

	mu sync.Mutex // guards the fields below; taken after Port.mu, before queue.mu
	// The fields are in an order that packs them: an idle connection costs
	// this struct, and it is one of the largest parts of that cost.
	//
	// The send queue. Its first inflight messages are being written by the
	// engine, which reads their bytes until SendDone: they are released
	// only there, so no buffer the kernel may be reading goes back to a
	// pool early. sending says a write is in flight or being started.
	sendq   []sendItem
	sendOff int // bytes of sendq[0] already written
	// The receive.
	recvTag   uint64 // its tag
	recvGen   uint32 // the generation of the last buffer lent (Buf.Lent), never 0; starts random, so that two connections' rarely meet
	recvArmed bool   // a receive is in progress
	recvMulti bool   // it goes on after each completion
	recvOut   bool   // a data completion of it is out, not yet released
	// recvFull is set when the backlog reached maxBacklog and Deliver
	// told the engine to stop (RecvState.Full); the release that brings
	// the backlog down to half of that clears it and calls the engine's
	// Recv to go on.
	recvFull bool
	// backlog holds what an engine received ahead of the user (a multishot
	// receive in the kernel goes on by itself) while a completion is out:
	// one result is delivered per release, in order. A holder made at the
	// first result that waits, and kept: one word, not a slice's three.
	backlog *recvBacklog
	// ext holds what few connections need, made at the first need (an
	// idle connection that never needed it holds nothing): the
	// connection's entries in the port's timer heap (its deadlines and
	// the limit of a graceful close still writing, Config.CloseTimeout),
	// the net.Conn adapter its completions go to (NetConn), and the
	// failure that broke the connection (errLocked).
	ext *connExtra
	// Closing: closed, by Close (graceful: the queue is still written) or
	// Abort; ends, which of the socket's ends are closed (connEnds: the
	// engine's Close called, CloseWrite called, the engine told of it).
	sending bool
	closed  bool
	ends    connEnds
	// recvEnding says the receive's end (an error: the end of stream, a
	// deadline, a close) waits in the backlog behind a completion out: it
	// is ended for the engine (recvArmed is false) but not yet for the
	// user. What the backlog holds after the end, or while no receive is
	// armed and none is ending, the engine read after a deadline had ended
	// the receive: it waits for the next receive.
	recvEnding bool
	// inflight is how many messages of sendq the current write carries
	// (SendBatch caps it at maxInflight); last, where it fits in the
	// padding.
	inflight uint16
	// rport is the peer's port, which goes with rip: read-only like it,
	// not guarded by mu; here, in the padding.
	rport uint16
}

// connEnds says which ends of a connection's socket are closed (Conn.ends).
type connEnds uint8

const (
	endIO       connEnds = 1 << iota // the engine's Close was called: the socket is closed
	endWrite                         // CloseWrite was called
	endShutdown                      // and the engine was told (its Shutdown called)
)

// maxInflight caps the messages of one write (SendBatch), so that they
// count in Conn.inflight; engines ask for 1024 at most (IOV_MAX).
const maxInflight = 1<<16 - 1

// localAddr is a connection's local address, shared by the connections a
// listener accepts on one address. A connection whose ends have no IP
// address (a Unix socket's) keeps both of them here instead, in other.
type localAddr struct {
	ap netip.AddrPort
	// other holds a Unix socket's local and remote addresses, or a TCP
	// connection's whose remote address has no place in Conn.rip (see
	// newConn); nil for the others.
	other *[2]net.Addr
}

// recvResult is a receive's outcome: n bytes in b, or err when n is 0.
type recvResult struct {
	b   *engine.Buf
	n   int
	err error
}

type sendItem struct {
	m     *Msg
	tag   uint64
	quiet bool
}

// newConn returns a connection of p on the engine's connection ec, between
// the local address *laddr, which it may share, and raddr (ignored if
// laddr.other is set).
func newConn(p *Port, ec engine.Conn, laddr *localAddr, raddr netip.AddrPort) *Conn {
	c := &Conn{p: p, io: ec, laddr: laddr, recvGen: rand.Uint32()}
	switch {
	case laddr.other != nil:
	case laddr.ap.Addr().Is4() && raddr.Addr().Unmap().Is4():
		// An IPv4 socket's peer, which an engine may give as 16 bytes:
		// IPv4 all the same.
		c.rip, c.rport = raddr.Addr().As16(), raddr.Port()
	case laddr.ap.Addr().Is6() && raddr.Addr().Is6() && raddr.Addr().Zone() == "":
		c.rip, c.rport = raddr.Addr().As16(), raddr.Port()
	default:
		// A peer address of another family than the local one, a zoned
		// one, or none: both addresses in a localAddr of c's own.
		c.laddr = &localAddr{ap: laddr.ap, other: &[2]net.Addr{tcpAddr(laddr.ap), tcpAddr(raddr)}}
	}
	return c
}

// newConnAddrs returns a connection of p on ec between laddr and raddr,
// which the engine found: TCP addresses, or others (a Unix socket's).
func newConnAddrs(p *Port, ec engine.Conn, laddr, raddr net.Addr) *Conn {
	_, ltcp := laddr.(*net.TCPAddr)
	_, rtcp := raddr.(*net.TCPAddr)
	if (laddr == nil || ltcp) && (raddr == nil || rtcp) {
		return newConn(p, ec, &localAddr{ap: addrPort(laddr)}, addrPort(raddr))
	}
	return newConn(p, ec, &localAddr{other: &[2]net.Addr{laddr, raddr}}, netip.AddrPort{})
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok && ta != nil {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

func tcpAddr(ap netip.AddrPort) net.Addr {
	if !ap.IsValid() {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// SetKey sets the connection's completion key, carried by its completions
// from then on. Set it before starting operations.
func (c *Conn) SetKey(key uint64) { c.key.Store(key) }

// Key returns the connection's completion key.
func (c *Conn) Key() uint64 { return c.key.Load() }

// SetValue attaches v to the connection, the user's data for it (a
// session, a request's state): every completion of the connection carries
// the Conn, and Completion.Conn.Value() returns v, so that a server needs no
// map from connections to their sessions. It is IOCP's completion key as a
// pointer, where Key is its number. Set it before starting the operations
// whose completions need it; it may be replaced at any time, from any
// goroutine, and a completion then sees the old value or the new. The
// connection holds v until it is garbage itself, closed or not: set nil to
// let go of v earlier.
func (c *Conn) SetValue(v any) {
	if v == nil {
		c.value.Store(nil)
		return
	}
	c.value.Store(&v)
}

// Value returns the value attached with SetValue, or nil.
func (c *Conn) Value() any {
	if v := c.value.Load(); v != nil {
		return *v
	}
	return nil
}

// RemoteAddr returns the peer's address: a *net.TCPAddr, or a
// *net.UnixAddr for a Unix socket.
func (c *Conn) RemoteAddr() net.Addr {
	if o := c.laddr.other; o != nil {
		return o[1]
	}
	ip := netip.AddrFrom16(c.rip)
	if c.laddr.ap.Addr().Is4() {
		ip = ip.Unmap()
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, c.rport))
}

// LocalAddr returns the local address: a *net.TCPAddr, or a *net.UnixAddr
// for a Unix socket (whose Name is empty for a dialed one, unbound).
func (c *Conn) LocalAddr() net.Addr {
	if o := c.laddr.other; o != nil {
		return o[0]
	}
	return tcpAddr(c.laddr.ap)
}

// Queued returns the bytes accepted by Send and SendQuiet and not yet
// written: what a slow consumer has let pile up.
func (c *Conn) Queued() int { return int(c.queued.Load()) }

// Written returns the bytes written to the connection so far, counted as
// each write completes (a write may carry many queued messages, and some
// engines complete it only once all of it is taken). A peer that does not
// read shows as Queued above zero while Written stands still.
func (c *Conn) Written() int64 { return c.written.Load() }

// Recv starts one receive (WSARecv): a completion of op OpRecv follows, with
// the bytes that arrived in a buffer lent by the port, or with an error.
// Once the read deadline has passed (SetReadDeadline), it returns an
// error matching os.ErrDeadlineExceeded instead, and no completion
// follows.
func (c *Conn) Recv(tag uint64) error { return c.startRecv(tag, false, false) }

// RecvMulti keeps receiving: a completion follows for every chunk of bytes
// that arrives, until one with an error (io.EOF for a graceful close) ends
// it. The next completion comes only after the previous one is released, so
// a connection's data is handled in order, by one worker at a time, and a
// connection whose completions are not released stops being read.
func (c *Conn) RecvMulti(tag uint64) error { return c.startRecv(tag, true, false) }

// startRecv starts a receive; adapter says the caller is the connection's
// NetConn, the only one that may receive on an adapted connection.
func (c *Conn) startRecv(tag uint64, multi, adapter bool) error {
	c.mu.Lock()
	nc := c.netConnLocked()
	switch {
	case nc != nil && !adapter:
		c.mu.Unlock()
		return ErrAdapted
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.recvArmed || c.recvEnding:
		c.mu.Unlock()
		return ErrBusy
	case c.ext != nil && c.ext.r.passed(c.p):
		c.mu.Unlock()
		return c.opError("recv", os.ErrDeadlineExceeded)
	}
	c.recvArmed, c.recvMulti, c.recvTag = true, multi, tag
	var comp Completion
	if c.backlogLen() > 0 && !(multi && c.recvOut) {
		// What the engine read after a deadline ended the last receive
		// comes first. (A multishot receive with a completion out takes
		// it at the release.)
		comp = c.recvCompletionLocked(c.popBacklogLocked())
	}
	// The engine goes on, unless the backlog holds too much still: then
	// a release calls it (see recvReleased).
	start := c.recvArmed && !(c.recvFull && c.backlogLen() > maxBacklog/2)
	if start {
		c.recvFull = false
	}
	c.mu.Unlock()
	if start {
		c.io.Recv()
	}
	if comp.Op != 0 {
		c.push(nc, comp)
	}
	return nil
}

// popBacklogLocked takes the first result out of the backlog.
func (c *Conn) popBacklogLocked() recvResult {
	q := c.backlog.q
	r := q[0]
	q[0] = recvResult{}
	c.backlog.q = q[1:]
	if len(q) == 1 {
		c.backlog.q = nil // let go of the array: idle connections hold nothing
	}
	return r
}

// recvBacklog holds a connection's backlog (Conn.backlog): a pointer in
// Conn, one word where the slice would take three, made at the first
// result that waits and kept (its array is let go of whenever it empties).
type recvBacklog struct{ q []recvResult }

// backlogLen returns how many results wait in the backlog (c.mu held).
func (c *Conn) backlogLen() int {
	if c.backlog == nil {
		return 0
	}
	return len(c.backlog.q)
}

// pushBacklogLocked appends r to the backlog.
func (c *Conn) pushBacklogLocked(r recvResult) {
	if c.backlog == nil {
		c.backlog = new(recvBacklog)
	}
	c.backlog.q = append(c.backlog.q, r)
}

// Send queues m to be written (WSASend) and returns at once; a completion of
// op OpSend and the given tag follows when all of m is written, or when the
// send failed. Messages queued on a connection are written in order, those
// waiting together in one system call. Send holds its own reference to m
// until then. An error returned by Send itself means no completion follows:
// ErrClosed, the error that broke the connection, or one matching
// os.ErrDeadlineExceeded once the write deadline has passed
// (SetWriteDeadline).
func (c *Conn) Send(m *Msg, tag uint64) error { return c.send(m, tag, false, false) }

// SendQuiet is Send for fan-out: it posts no completion. Should the write
// fail, the connection breaks instead: its receive in progress completes
// with the error, and later calls return it.
func (c *Conn) SendQuiet(m *Msg) error { return c.send(m, 0, true, false) }

// send queues m; adapter says the caller is the connection's NetConn, the
// only one that may send on an adapted connection.
func (c *Conn) send(m *Msg, tag uint64, quiet, adapter bool) error {
	c.mu.Lock()
	switch {
	case !adapter && c.netConnLocked() != nil:
		c.mu.Unlock()
		return ErrAdapted
	case c.closed || c.ends&endWrite != 0:
		c.mu.Unlock()
		return ErrClosed
	case c.errLocked() != nil:
		err := c.errLocked()
		c.mu.Unlock()
		return err
	case c.ext != nil && c.ext.w.passed(c.p):
		c.mu.Unlock()
		return c.opError("send", os.ErrDeadlineExceeded)
	}
	m.Ref()
	c.sendq = append(c.sendq, sendItem{m: m, tag: tag, quiet: quiet})
	c.queued.Add(int64(m.Len()))
	start := !c.sending
	c.sending = true
	c.mu.Unlock()
	if start {
		c.io.Flush()
	}
	return nil
}

// Close closes the connection gracefully, as Go's net closes a TCP
// connection: the messages queued on it are still written, in the
// background, and then the socket is closed, so that the peer reads every
// one of them and then an end of stream. A receive in progress completes
// with ErrCanceled at once, and later calls fail with ErrClosed.
//
// Should the queued messages not be written within Config.CloseTimeout
// (a peer that does not read), the connection is reset and what was not
// written completes with ErrCanceled. Abort resets at once. Closing twice,
// or after Abort, is harmless.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	nc := c.netConnLocked()
	end := c.endRecvLocked()
	orphans := c.dropOrphansLocked()
	now := !c.sending // nothing to write: close the socket now
	if now {
		c.ends |= endIO
	} else {
		// A closed port schedules nothing: its Close closes c.
		tm := c.extLocked()
		c.p.timers.schedule(&tm.linger.e, c.p.timers.now()+int64(c.p.cfg.CloseTimeout))
	}
	c.mu.Unlock()
	c.releaseBufs(orphans)
	c.pushEnd(nc, end)
	if now {
		c.closeIO(false)
	}
	return nil
}

// setIOClosedLocked marks the engine's socket closed (the caller closes it
// with closeIO once unlocked) and takes its timers out of the port's heap.
func (c *Conn) setIOClosedLocked() {
	c.ends |= endIO
	if tm := c.ext; tm != nil {
		c.p.timers.remove(&tm.linger.e)
		c.p.timers.remove(&tm.r.e)
		c.p.timers.remove(&tm.w.e)
	}
}

// closeIO closes the engine's socket, once ends has endIO: the port no
// longer holds the connection. A connection closing gracefully stays in the
// port's list until then, so that Port.Close closes it too.
func (c *Conn) closeIO(reset bool) {
	c.p.forgetConn(c)
	c.io.Close(reset)
}

// Abort closes the connection at once with a reset (RST): messages queued
// and not yet being written complete with ErrCanceled at once, one being
// written and the receive in progress as soon as the engine lets go of
// their buffers. The kernel keeps nothing of the connection, no unsent
// data and no closing state: for peers that must not cost the host
// anything more (a slow consumer, an abusive client). Calling it after
// Close resets a connection still writing its queue.
func (c *Conn) Abort() error {
	c.shut(true, ErrCanceled)
	return nil
}

// close closes the connection at once, without a reset and without
// writing what is queued: Port.Close.
func (c *Conn) close() { c.shut(false, ErrCanceled) }

// lingerExpired resets a connection whose graceful close took longer than
// Config.CloseTimeout.
func (c *Conn) lingerExpired() { c.shut(true, ErrCanceled) }

// shut closes the socket now (reset: with RST), failing with err what is
// queued and not being written. The receive in progress ends with
// ErrCanceled once the engine lets go of it.
func (c *Conn) shut(reset bool, err error) {
	c.mu.Lock()
	if c.ends&endIO != 0 {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.setIOClosedLocked()
	orphans := c.dropOrphansLocked()
	var buf [4]Completion
	due := c.failSendsLocked(int(c.inflight), err, buf[:0])
	nc := c.netConnLocked()
	c.mu.Unlock()
	c.releaseBufs(orphans)
	c.pushAll(nc, due)
	c.closeIO(reset)
}

// CloseWrite shuts the writing side of the connection down once every
// message queued before it is written (TCP's half-close): the peer reads
// them, then an end of stream, and may go on sending; receives go on.
// Sends after it fail with ErrClosed. Calling it twice is harmless.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.ends&endWrite != 0:
		c.mu.Unlock()
		return nil
	}
	c.ends |= endWrite
	now := !c.sending
	if now {
		c.ends |= endShutdown
	}
	c.mu.Unlock()
	if now {
		c.io.Shutdown()
	}
	return nil
}

// endRecvLocked ends the receive in progress of a connection being closed
// with ErrCanceled: the completion to push (zero if none is due now), or,
// while a multishot receive's completion is out, the end queued in the
// backlog for its release.
func (c *Conn) endRecvLocked() Completion {
	if !c.recvArmed {
		return Completion{}
	}
	if c.recvOut && c.recvMulti {
		c.pushBacklogLocked(recvResult{err: ErrCanceled})
		c.recvArmed, c.recvEnding = false, true
		return Completion{}
	}
	return c.recvCompletionLocked(recvResult{err: ErrCanceled})
}

// pushEnd pushes a receive's end made by endRecvLocked, unlocked: a
// closed queue releases what is pushed.
func (c *Conn) pushEnd(nc *NetConn, end Completion) {
	if end.Op != 0 {
		c.push(nc, end)
	}
}

// failSendsLocked fails the queued messages from index from on, appending
// to due the completions of those that asked for one, with err: the
// caller pushes them once it has unlocked c.mu (a Config.Handler runs
// them at once, and may call back into c).
func (c *Conn) failSendsLocked(from int, err error, due []Completion) []Completion {
	for i := from; i < len(c.sendq); i++ {
		it := c.sendq[i]
		c.queued.Add(-int64(it.m.Len()))
		if !it.quiet {
			due = append(due, Completion{Op: OpSend, Key: c.Key(), Tag: it.tag, N: it.m.Len(), Err: err, Conn: c})
		}
		it.m.Release()
		c.sendq[i] = sendItem{}
	}
	c.sendq = c.sendq[:from]
	if from == 0 {
		c.sendOff = 0
	}
	return due
}

func (c *Conn) opError(op string, err error) error {
	return &OpError{Op: op, Backend: c.p.backend, Addr: c.RemoteAddr(), Err: err}
}

// connOwner is the port's side of a connection as its engine sees it
// (engine.ConnOwner): the Conn under another name, so that the methods the
// engine calls are not part of Conn's API.
type connOwner Conn

// SendBatch appends the unwritten bytes of the queued messages to iov, at
// most max of them, and marks them in flight: the engine writes them, then
// calls SendDone. The slices stay valid until SendDone.
func (o *connOwner) SendBatch(iov [][]byte, max int) [][]byte {
	c := (*Conn)(o)
	c.mu.Lock()
	k := min(len(c.sendq), max, maxInflight)
	for i := range k {
		b := c.sendq[i].m.b
		if i == 0 {
			b = b[c.sendOff:]
		}
		iov = append(iov, b)
	}
	c.inflight = uint16(k)
	c.mu.Unlock()
	return iov
}

// SendDone accounts for a write of the batch from SendBatch that wrote n
// bytes and ended with err. It completes what was written whole, fails the
// rest on error or close, and reports whether more is queued to write, in
// which case the engine goes on with another SendBatch.
func (o *connOwner) SendDone(n int, err error) (more bool) {
	c := (*Conn)(o)
	if n > 0 {
		c.written.Add(int64(n))
	}
	var buf [4]Completion
	due := buf[:0] // pushed once c.mu is unlocked: see failSendsLocked
	c.mu.Lock()
	done := 0
	for done < len(c.sendq) {
		it := c.sendq[done]
		left := it.m.Len() - c.sendOff
		if n < left {
			c.sendOff += n
			break
		}
		n -= left
		c.sendOff = 0
		c.queued.Add(-int64(it.m.Len()))
		if !it.quiet {
			due = append(due, Completion{Op: OpSend, Key: c.Key(), Tag: it.tag, N: it.m.Len(), Conn: c})
		}
		it.m.Release()
		done++
	}
	k := copy(c.sendq, c.sendq[done:])
	clear(c.sendq[k:])
	c.sendq = c.sendq[:k]
	c.inflight = 0
	switch {
	case c.ends&endIO != 0:
		err = ErrCanceled
	case err != nil:
		err = c.opError("send", err)
		if x := c.extLocked(); x.err == nil {
			x.err = err
		}
	}
	if err != nil {
		due = c.failSendsLocked(0, err, due)
	}
	c.sending = len(c.sendq) > 0
	// The queue is written: a graceful Close closes the socket now, a
	// CloseWrite shuts its writing side down.
	closeNow := !c.sending && c.closed && c.ends&endIO == 0
	if closeNow {
		c.setIOClosedLocked()
	}
	shutdown := !c.sending && c.ends&(endWrite|endShutdown) == endWrite && !c.closed
	if shutdown {
		c.ends |= endShutdown
	}
	more = c.sending
	nc := c.netConnLocked()
	c.mu.Unlock()
	c.pushAll(nc, due)
	switch {
	case closeNow:
		c.closeIO(false)
	case shutdown:
		c.io.Shutdown()
	}
	return more
}

// Broken reports the failure that broke the connection, for an engine that
// must now shut the socket down so that the receive ends.
func (o *connOwner) Broken() error {
	c := (*Conn)(o)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errLocked()
}

// RecvState tells the engine where the receive stands (see
// engine.RecvState).
func (o *connOwner) RecvState() engine.RecvState {
	c := (*Conn)(o)
	c.mu.Lock()
	defer c.mu.Unlock()
	return engine.RecvState{
		Armed:  c.recvArmed,
		Multi:  c.recvMulti,
		Ready:  c.recvArmed && !(c.recvMulti && c.recvOut),
		Full:   c.recvFull,
		Closed: c.closed,
	}
}

// ownBuf is the Buf.ID of a copy the Conn made of an engine's buffer
// (Deliver, past maxBacklog): no engine's, it goes to the garbage collector.
const ownBuf = -1

// releaseBuf gives b back to the engine, unless it is the Conn's own copy.
func (c *Conn) releaseBuf(b *engine.Buf) {
	if b.ID != ownBuf {
		c.io.Release(b)
	}
}

// releaseBufs gives every buffer of bs back (releaseBuf).
func (c *Conn) releaseBufs(bs []*engine.Buf) {
	for _, b := range bs {
		c.releaseBuf(b)
	}
}

// dropOrphansLocked empties the backlog of a closed connection whose
// receive has ended, for the user too: what the engine read after a
// deadline ended it, which no receive will take now. It returns the
// buffers to release once unlocked.
func (c *Conn) dropOrphansLocked() []*engine.Buf {
	if !c.closed || c.recvArmed || c.recvEnding || c.backlogLen() == 0 {
		return nil
	}
	var bufs []*engine.Buf
	for _, r := range c.backlog.q {
		if r.n > 0 {
			bufs = append(bufs, r.b)
		}
	}
	clear(c.backlog.q)
	c.backlog.q = nil
	return bufs
}

// maxBacklog is how many results of a multishot receive wait at most
// behind the completion the user holds; an engine that runs ahead (uring's
// multishot receive) stops there, and what it had on its way is copied, so
// that a connection whose completion is held keeps no more than that of
// the port's buffers, which the other connections share. Flow control for the user:
// holding a completion stops the connection's reads, and TCP then slows
// its peer.
const maxBacklog = 4

// Deliver completes the receive with n bytes in b, or with err when n is
// 0 (io.EOF for a graceful close). While a multishot receive's completion is
// out, the result waits in the backlog for its release. It reports whether
// the receive goes on: not once the backlog holds maxBacklog results
// (RecvState.Full), until releases bring it down to half.
func (o *connOwner) Deliver(b *engine.Buf, n int, err error) bool {
	c := (*Conn)(o)
	c.mu.Lock()
	if c.closed && (n > 0 || !c.recvArmed) {
		// No receive to complete: ended by Close before the engine knew
		// (the data that came meanwhile is nobody's), or by an error.
		armed := c.recvArmed
		c.mu.Unlock()
		if n > 0 {
			c.releaseBuf(b)
		}
		if armed {
			return o.Deliver(nil, 0, ErrCanceled)
		}
		return false
	}
	if c.recvOut && c.recvMulti || !c.recvArmed {
		// A completion is out, or no receive is armed: a deadline ended
		// it while the engine read (an orphan), and the next receive
		// takes this. The engine stops meanwhile (Full).
		orphan := !c.recvArmed
		var copied *engine.Buf
		if n > 0 && c.backlogLen() >= maxBacklog {
			// Past the backlog's bound, what was already on its way is
			// kept in a copy, and the engine's buffer goes back at once.
			copied = b
			b = &engine.Buf{B: bytes.Clone(b.B[:n]), ID: ownBuf}
		}
		c.pushBacklogLocked(recvResult{b, n, err})
		if n == 0 && !orphan {
			// Its end is known, if not yet delivered.
			c.recvArmed, c.recvEnding = false, true
		}
		if orphan || c.recvArmed && c.backlogLen() >= maxBacklog {
			c.recvFull = true
		}
		more := c.recvArmed && !c.recvFull
		c.mu.Unlock()
		if copied != nil {
			c.io.Release(copied)
		}
		return more
	}
	comp := c.recvCompletionLocked(recvResult{b, n, err})
	more := c.recvArmed
	nc := c.netConnLocked()
	c.mu.Unlock()
	// Pushed unlocked: a closed queue releases comp, which takes c.mu. The
	// next receive cannot overtake this one: it waits for the release.
	c.push(nc, comp)
	return more
}

// recvCompletionLocked turns a receive's result into its completion and
// moves the receive's state on.
func (c *Conn) recvCompletionLocked(r recvResult) Completion {
	comp := Completion{Op: OpRecv, Key: c.Key(), Tag: c.recvTag, Conn: c}
	if r.n > 0 {
		c.recvGen++
		if c.recvGen == 0 {
			c.recvGen = 1
		}
		r.b.Lent.Store(c.recvGen)
		comp.N, comp.Buf, comp.buf, comp.gen = r.n, r.b.B[:r.n], r.b, c.recvGen
		c.recvOut = true
		c.recvArmed = c.recvMulti && !c.recvEnding
		return comp
	}
	switch {
	case c.errLocked() != nil:
		comp.Err = c.errLocked() // the send failure that broke the connection
	case c.closed:
		comp.Err = ErrCanceled
	case r.err == io.EOF:
		comp.Err = io.EOF
	default:
		comp.Err = c.opError("recv", r.err)
	}
	c.recvArmed, c.recvEnding = false, false
	return comp
}

// recvReleased is Completion.Release for receives: the buffer goes back to
// the engine, and the next result in the backlog, if any, is delivered (on a
// closed connection, only the final error is). gen is the completion's
// generation: a buffer released twice no longer carries it.
func (c *Conn) recvReleased(b *engine.Buf, gen uint32) {
	var next Completion
	var dropped []*engine.Buf
	c.mu.Lock()
	if !b.Lent.CompareAndSwap(gen, 0) {
		c.mu.Unlock()
		panic("cport: Completion.Release of a receive completion already released")
	}
	c.recvOut = false
	// The next result of the receive, or of its end; what the engine read
	// after the receive ended waits for the next one (see recvEnding).
	for c.backlogLen() > 0 && (c.recvArmed && c.recvMulti || c.recvEnding) {
		r := c.popBacklogLocked()
		if c.closed && r.n > 0 {
			dropped = append(dropped, r.b)
			continue
		}
		next = c.recvCompletionLocked(r)
		break
	}
	dropped = append(dropped, c.dropOrphansLocked()...)
	resume := c.recvFull && c.backlogLen() <= maxBacklog/2
	if resume {
		c.recvFull = false
		resume = c.recvArmed && !c.closed
	}
	nc := c.netConnLocked()
	c.mu.Unlock()
	c.releaseBuf(b)
	c.releaseBufs(dropped)
	if resume {
		c.io.Recv()
	}
	if next.Op != 0 {
		c.push(nc, next)
	}
}
