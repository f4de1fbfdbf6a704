package cport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"cport.dev/cport/internal/engine"
)

// A PacketConn is a datagram socket (UDP) associated with a port, opened
// with Port.ListenPacket. Its receives (RecvFrom, RecvFromMulti) and sends
// (SendTo) complete into the port's queue under its completion key, each
// with the peer's address in Completion.Addr: IOCP's WSARecvFrom and
// WSASendTo. Its methods are safe for concurrent use.
//
// Buffers: a receive's datagram is in a buffer lent by the port, as a
// Conn's receive is, until Completion.Release; a datagram longer than
// Config.RecvBufferSize-64 bytes is truncated to that many, the rest
// discarded, on every engine. A send holds its own reference to its Msg,
// whose bytes the kernel may read, until its completion.
type PacketConn struct {
	p     *Port
	key   atomic.Uint64
	io    engine.PacketConn // set before the PacketConn is published
	laddr net.Addr

	mu sync.Mutex // guards the fields below; taken after Port.mu, before queue.mu
	// The receive, as a Conn's: at most one in progress; a multishot
	// one completes again only after its last completion is released,
	// what the engine received meanwhile waiting in backlog.
	recvTag    uint64
	recvGen    uint32
	recvArmed  bool
	recvMulti  bool
	recvOut    bool // a completion of a multishot receive is out, not yet released
	recvEnding bool // the receive's end waits in the backlog behind the completion out
	recvFull   bool // the backlog is full: the engine stops until releases halve it
	backlog    []packetResult
	// The sends: sendq[0] is being written while inflight.
	sendq    []packetSend
	sending  bool // the engine is writing (Flush called, NextSend not yet empty)
	inflight bool
	closed   bool
}

type packetResult struct {
	b    *engine.Buf
	off  int
	n    int
	from netip.AddrPort
	err  error
}

type packetSend struct {
	m   *Msg
	to  netip.AddrPort
	tag uint64
}

// ListenPacket opens a datagram socket associated with p under the
// completion key key. network is "udp", "udp4" or "udp6"; address as for
// net.ListenPacket ("127.0.0.1:0", "[::1]:9000", ":53"). Nothing is
// received until RecvFrom or RecvFromMulti. An engine without datagram
// sockets returns an error matching ErrUnsupported that names it.
func (p *Port) ListenPacket(network, address string, key uint64) (*PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, &OpError{Op: "listen", Backend: p.backend, Err: fmt.Errorf("network %q: want udp, udp4 or udp6", network)}
	}
	if p.cfg.RecvBufferSize <= engine.PacketHeadroom {
		return nil, &OpError{Op: "listen", Backend: p.backend, Err: fmt.Errorf("Config.RecvBufferSize %d leaves no room for a datagram: want more than %d", p.cfg.RecvBufferSize, engine.PacketHeadroom)}
	}
	pe, ok := p.eng.(engine.PacketEngine)
	if !ok {
		return nil, fmt.Errorf("cport %s: UDP not supported: %w", p.backend, ErrUnsupported)
	}
	pc := &PacketConn{p: p, recvGen: rand.Uint32() | 1}
	pc.key.Store(key)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	io, err := pe.ListenPacket(network, address, (*packetOwner)(pc))
	if err != nil {
		var addr net.Addr
		if a, rerr := net.ResolveUDPAddr(network, address); rerr == nil {
			addr = a
		}
		return nil, &OpError{Op: "listen", Backend: p.backend, Addr: addr, Err: err}
	}
	pc.io, pc.laddr = io, io.LocalAddr()
	if p.packets == nil {
		p.packets = make(map[*PacketConn]struct{})
	}
	p.packets[pc] = struct{}{}
	return pc, nil
}

// SetKey sets the socket's completion key, carried by its completions from
// then on.
func (pc *PacketConn) SetKey(key uint64) { pc.key.Store(key) }

// Key returns the socket's completion key.
func (pc *PacketConn) Key() uint64 { return pc.key.Load() }

// LocalAddr returns the address the socket is bound to, a *net.UDPAddr.
func (pc *PacketConn) LocalAddr() net.Addr { return pc.laddr }

// RecvFrom starts one receive (WSARecvFrom): a completion of op
// OpRecvFrom follows, with the datagram in Buf (N bytes, zero for an
// empty datagram), lent by the port until Completion.Release, and its
// sender in Addr; or with an error. A socket has at most one receive in
// progress: another returns ErrBusy.
func (pc *PacketConn) RecvFrom(tag uint64) error { return pc.startRecv(tag, false) }

// RecvFromMulti keeps receiving: a completion of op OpRecvFrom follows for
// every datagram, until one with an error ends it (ErrCanceled at Close).
// The next completion comes only after the previous one is released, so
// that datagrams are handled in the order they came; what arrives
// meanwhile waits, a few datagrams of it, past which the engine stops
// reading and the kernel's socket buffer holds the rest (and drops what it
// cannot hold, as for any UDP socket nobody reads). On io_uring it is one
// multishot IORING_OP_RECVMSG with buffers from the ring's provided
// buffer ring.
func (pc *PacketConn) RecvFromMulti(tag uint64) error { return pc.startRecv(tag, true) }

func (pc *PacketConn) startRecv(tag uint64, multi bool) error {
	pc.mu.Lock()
	switch {
	case pc.closed:
		pc.mu.Unlock()
		return ErrClosed
	case pc.recvArmed || pc.recvEnding:
		pc.mu.Unlock()
		return ErrBusy
	}
	pc.recvArmed, pc.recvMulti, pc.recvTag = true, multi, tag
	pc.mu.Unlock()
	pc.io.Recv()
	return nil
}

// SendTo queues m to be sent as one datagram to addr (WSASendTo) and
// returns at once; a completion of op OpSendTo, the given tag and Addr
// addr follows once the datagram is handed to the kernel, or failed (a
// datagram too long for the network: an error matching syscall.EMSGSIZE).
// Datagrams queued on a socket are sent in order, one at a time. SendTo
// holds its own reference to m until the completion. An error returned by
// SendTo itself (ErrClosed, an invalid address) means no completion
// follows.
func (pc *PacketConn) SendTo(m *Msg, addr netip.AddrPort, tag uint64) error {
	if !addr.IsValid() {
		return &OpError{Op: "sendto", Backend: pc.p.backend, Err: fmt.Errorf("invalid address %v", addr)}
	}
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return ErrClosed
	}
	m.Ref()
	pc.sendq = append(pc.sendq, packetSend{m: m, to: addr, tag: tag})
	start := !pc.sending
	pc.sending = true
	pc.mu.Unlock()
	if start {
		pc.io.Flush()
	}
	return nil
}

// Close closes the socket: a receive in progress completes with
// ErrCanceled, and so do the datagrams queued and not yet being sent; the
// one being sent completes as the engine lets go of it. Later calls fail
// with ErrClosed. Closing twice is harmless.
func (pc *PacketConn) Close() error {
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return nil
	}
	pc.closed = true
	var due []Completion
	if end, ok := pc.endRecvLocked(); ok {
		due = append(due, end)
	}
	from := 0
	if pc.inflight {
		from = 1
	}
	var msgs []*Msg
	for _, s := range pc.sendq[from:] {
		due = append(due, pc.sendCompletion(s, ErrCanceled))
		msgs = append(msgs, s.m)
	}
	clear(pc.sendq[from:])
	pc.sendq = pc.sendq[:from]
	pc.mu.Unlock()
	pc.p.forgetPacket(pc)
	pc.io.Close()
	for _, m := range msgs {
		m.Release()
	}
	for _, c := range due {
		pc.p.q.push(c)
	}
	return nil
}

// endRecvLocked ends the receive in progress of a socket being closed with
// ErrCanceled: the completion to push, or, while a multishot receive's
// completion is out, the end queued for its release.
func (pc *PacketConn) endRecvLocked() (Completion, bool) {
	if !pc.recvArmed {
		return Completion{}, false
	}
	if pc.recvOut && pc.recvMulti {
		pc.backlog = append(pc.backlog, packetResult{err: ErrCanceled})
		pc.recvArmed, pc.recvEnding = false, true
		return Completion{}, false
	}
	return pc.recvCompletionLocked(packetResult{err: ErrCanceled}), true
}

func (pc *PacketConn) sendCompletion(s packetSend, err error) Completion {
	return Completion{Op: OpSendTo, Key: pc.Key(), Tag: s.tag, N: s.m.Len(), Err: err, Packet: pc, Addr: s.to}
}

func (pc *PacketConn) opError(op string, addr netip.AddrPort, err error) error {
	var a net.Addr
	if addr.IsValid() {
		a = net.UDPAddrFromAddrPort(addr)
	}
	return &OpError{Op: op, Backend: pc.p.backend, Addr: a, Err: err}
}

// recvCompletionLocked turns a receive's result into its completion and
// moves the receive's state on.
func (pc *PacketConn) recvCompletionLocked(r packetResult) Completion {
	c := Completion{Op: OpRecvFrom, Key: pc.Key(), Tag: pc.recvTag, Packet: pc}
	if r.b != nil {
		pc.recvGen++
		if pc.recvGen == 0 {
			pc.recvGen = 1
		}
		r.b.Lent.Store(pc.recvGen)
		c.N, c.Buf, c.buf, c.gen, c.Addr = r.n, r.b.B[r.off:r.off+r.n:r.off+r.n], r.b, pc.recvGen, r.from
		pc.recvOut = true
		pc.recvArmed = pc.recvMulti && !pc.recvEnding
		return c
	}
	switch {
	case pc.closed || r.err == ErrCanceled:
		c.Err = ErrCanceled
	default:
		c.Err = pc.opError("recvfrom", netip.AddrPort{}, r.err)
	}
	pc.recvArmed, pc.recvEnding = false, false
	return c
}

// recvReleased is Completion.Release for datagrams: the buffer goes back
// to the engine, and the next result in the backlog, if any, completes.
func (pc *PacketConn) recvReleased(b *engine.Buf, gen uint32) {
	if !b.Lent.CompareAndSwap(gen, 0) {
		panic("cport: Completion.Release of a receive completion already released")
	}
	var next Completion
	var dropped []*engine.Buf
	pc.mu.Lock()
	pc.recvOut = false
	for len(pc.backlog) > 0 && (pc.recvArmed && pc.recvMulti || pc.recvEnding) {
		r := pc.backlog[0]
		pc.backlog[0] = packetResult{}
		pc.backlog = pc.backlog[1:]
		if pc.closed && r.b != nil {
			dropped = append(dropped, r.b)
			continue
		}
		next = pc.recvCompletionLocked(r)
		break
	}
	if len(pc.backlog) == 0 {
		pc.backlog = nil
	}
	resume := pc.recvFull && len(pc.backlog) <= maxBacklog/2
	if resume {
		pc.recvFull = false
		resume = pc.recvArmed && !pc.closed
	}
	pc.mu.Unlock()
	pc.releaseBuf(b)
	for _, d := range dropped {
		pc.releaseBuf(d)
	}
	if resume {
		pc.io.Recv()
	}
	if next.Op != 0 {
		pc.p.q.push(next)
	}
}

// releaseBuf gives b back to the engine, unless it is the socket's own
// copy (ownBuf).
func (pc *PacketConn) releaseBuf(b *engine.Buf) {
	if b.ID != ownBuf {
		pc.io.Release(b)
	}
}

// packetOwner is the port's side of a PacketConn as its engine sees it
// (engine.PacketOwner).
type packetOwner PacketConn

// RecvState tells the engine where the receive stands.
func (o *packetOwner) RecvState() engine.RecvState {
	pc := (*PacketConn)(o)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return engine.RecvState{
		Armed:  pc.recvArmed,
		Multi:  pc.recvMulti,
		Ready:  pc.recvArmed && !(pc.recvMulti && pc.recvOut) && !pc.recvFull,
		Full:   pc.recvFull,
		Closed: pc.closed,
	}
}

// Deliver completes the receive with a datagram, or ends it with err (b
// nil). While a multishot receive's completion is out, the result waits in
// the backlog; once it holds maxBacklog, the engine is told to stop until
// releases halve it, and what was already on its way is copied, so that
// the engine's buffer goes back at once.
func (o *packetOwner) Deliver(b *engine.Buf, off, n int, from netip.AddrPort, err error) bool {
	pc := (*PacketConn)(o)
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	pc.mu.Lock()
	if !pc.recvArmed || pc.closed {
		// No receive to complete: ended by Close before the engine knew.
		pc.mu.Unlock()
		if b != nil {
			pc.releaseBuf(b)
		}
		return false
	}
	if pc.recvOut && pc.recvMulti {
		var copied *engine.Buf
		if b != nil && len(pc.backlog) >= maxBacklog {
			// Past the backlog's bound, what was already on its way is
			// kept in a copy, and the engine's buffer goes back at once.
			copied = b
			b, off = &engine.Buf{B: bytes.Clone(b.B[off : off+n]), ID: ownBuf}, 0
		}
		pc.backlog = append(pc.backlog, packetResult{b, off, n, from, err})
		if b == nil {
			pc.recvArmed, pc.recvEnding = false, true
		}
		if len(pc.backlog) >= maxBacklog {
			pc.recvFull = true
		}
		more := pc.recvArmed && !pc.recvFull
		pc.mu.Unlock()
		if copied != nil {
			pc.io.Release(copied)
		}
		return more
	}
	comp := pc.recvCompletionLocked(packetResult{b, off, n, from, err})
	more := pc.recvArmed
	pc.mu.Unlock()
	pc.p.q.push(comp)
	return more
}

// NextSend returns the datagram to write next, marking it in flight.
func (o *packetOwner) NextSend() ([]byte, netip.AddrPort, bool) {
	pc := (*PacketConn)(o)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.sendq) == 0 || pc.closed {
		pc.sending = false
		return nil, netip.AddrPort{}, false
	}
	pc.inflight = true
	s := pc.sendq[0]
	return s.m.b, s.to, true
}

// SendDone completes the datagram in flight.
func (o *packetOwner) SendDone(err error) {
	pc := (*PacketConn)(o)
	pc.mu.Lock()
	if !pc.inflight || len(pc.sendq) == 0 {
		pc.mu.Unlock()
		return
	}
	s := pc.sendq[0]
	pc.sendq[0] = packetSend{}
	pc.sendq = pc.sendq[1:]
	if len(pc.sendq) == 0 {
		pc.sendq = nil
	}
	pc.inflight = false
	if pc.closed {
		pc.sending = false
	}
	if err != nil && err != ErrCanceled {
		err = pc.opError("sendto", s.to, err)
	}
	pc.mu.Unlock()
	c := pc.sendCompletion(s, err)
	s.m.Release()
	pc.p.q.push(c)
}
