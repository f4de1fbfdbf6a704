package epoll

// The epoll engine's datagram sockets (UDP): see doc.go, "Datagram
// sockets".

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// packet is a datagram socket, the engine.PacketConn package cport holds.
type packet struct {
	owner engine.PacketOwner
	e     *Engine
	fd    int32
	gen   uint32
	v6    bool // AF_INET6: sockaddrs are sockaddr_in6
	addr  *net.UDPAddr

	mu sync.Mutex // guards st
	st pkState

	// Owned by the goroutine writing (pkWriting): the datagram it waits
	// to write once EPOLLOUT comes.
	pend   []byte
	pendTo netip.AddrPort
}

type pkState uint16

const (
	pkReadable pkState = 1 << iota // recvfrom may find a datagram
	pkReading                      // a goroutine owns the read side (runs readLoop)
	pkAgain                        // something changed while it did: look again
	pkWritable                     // an EPOLLOUT edge came since the last sendto began
	pkWaitOut                      // a datagram waits for EPOLLOUT (pend): the poller sends it
	pkWriting                      // a goroutine owns the write side (runs writeLoop), or one waits (pkWaitOut)
	pkWAgain                       // Flush was called while it did
	pkClosed                       // Close was called
	pkFdClosed                     // the descriptor is closed
)

// ListenPacket opens a non-blocking UDP socket and registers it with a
// poller, edge-triggered for both directions.
func (e *Engine) ListenPacket(network, address string, owner engine.PacketOwner) (engine.PacketConn, error) {
	fd, bound, v6, err := sockopt.ListenUDP(network, address)
	if err != nil {
		return nil, err
	}
	pk := &packet{owner: owner, e: e, fd: int32(fd), gen: e.newGen(false) | genPacket, v6: v6, addr: bound, st: pkReadable | pkWritable}
	if err := e.registerPacket(pk); err != nil {
		e.closeSocket(pk.fd)
		return nil, err
	}
	return pk, nil
}

func (e *Engine) registerPacket(pk *packet) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return net.ErrClosed
	}
	e.lnMu.Lock()
	if e.pks == nil {
		e.pks = make(map[int32]*packet)
	}
	e.pks[pk.fd] = pk
	e.lnMu.Unlock()
	pl := e.pollers[e.next.Add(1)%uint32(len(e.pollers))]
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLET, Fd: pk.fd, Pad: int32(pk.gen)}
	if err := e.epollAdd(pl.epfd, pk.fd, &ev); err != nil {
		e.forgetPacket(pk)
		return err
	}
	return nil
}

func (e *Engine) forgetPacket(pk *packet) {
	e.lnMu.Lock()
	if e.pks[pk.fd] == pk {
		delete(e.pks, pk.fd)
	}
	e.lnMu.Unlock()
}

// packetEvent marks a datagram socket readable or writable, and runs its
// read or its waiting write on the poller's goroutine.
func (e *Engine) packetEvent(ev unix.EpollEvent, gen uint32) {
	e.lnMu.Lock()
	pk := e.pks[ev.Fd]
	e.lnMu.Unlock()
	if pk == nil || pk.gen != gen {
		return
	}
	var read, write bool
	pk.mu.Lock()
	if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		pk.st |= pkReadable
		if pk.st&pkReading != 0 {
			pk.st |= pkAgain
		} else if pk.st&pkClosed == 0 {
			pk.st |= pkReading
			read = true
		}
	}
	if ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		pk.st |= pkWritable
		if pk.st&pkWaitOut != 0 {
			pk.st &^= pkWaitOut
			write = true
		}
	}
	pk.mu.Unlock()
	if write {
		pk.writeLoop(true)
	}
	if read {
		pk.readLoop()
	}
}

func (pk *packet) LocalAddr() net.Addr { return pk.addr }

// Recv reads what the socket has, if the receive is ready.
func (pk *packet) Recv() { pk.kickRead() }

// Release takes back a buffer: a multishot receive may go on.
func (pk *packet) Release(b *engine.Buf) {
	pk.e.pool.Put(b)
	pk.kickRead()
}

// kickRead runs the read side here, or tells the goroutine running it to
// look again.
func (pk *packet) kickRead() {
	pk.mu.Lock()
	if pk.st&pkReading != 0 {
		pk.st |= pkAgain
		pk.mu.Unlock()
		return
	}
	pk.st |= pkReading
	pk.mu.Unlock()
	pk.readLoop()
}

// readLoop reads datagrams while the receive is ready and the socket has
// them, ends an armed receive of a closed socket with ErrCanceled, and lets
// the read side go, closing the descriptor if nobody else uses it.
func (pk *packet) readLoop() {
	for {
		pk.mu.Lock()
		pk.st &^= pkAgain
		closed, readable := pk.st&pkClosed != 0, pk.st&pkReadable != 0
		pk.mu.Unlock()
		rs := pk.owner.RecvState()
		if closed {
			if rs.Armed {
				pk.owner.Deliver(nil, 0, 0, netip.AddrPort{}, engine.ErrCanceled)
			}
			pk.letGo(pkReading)
			return
		}
		if !rs.Ready || !readable {
			pk.mu.Lock()
			if pk.st&pkAgain != 0 {
				pk.mu.Unlock()
				continue
			}
			pk.st &^= pkReading
			pk.mu.Unlock()
			return
		}
		b := pk.e.pool.Get()
		n, from, err := unix.Recvfrom(int(pk.fd), b.B[:engine.PacketRoom(len(b.B))], 0)
		switch err {
		case nil:
			pk.owner.Deliver(b, 0, n, sockopt.SockaddrAddrPort(from), nil)
		case unix.EINTR:
			pk.e.pool.Put(b)
		case unix.EAGAIN:
			pk.e.pool.Put(b)
			pk.mu.Lock()
			if pk.st&pkAgain == 0 {
				pk.st &^= pkReadable // until the next EPOLLIN edge
			}
			pk.mu.Unlock()
		default:
			pk.e.pool.Put(b)
			pk.owner.Deliver(nil, 0, 0, netip.AddrPort{}, err)
		}
	}
}

// letGo clears side (pkReading or pkWriting) and closes the descriptor of
// a closed socket once neither side uses it.
func (pk *packet) letGo(side pkState) {
	pk.mu.Lock()
	pk.st &^= side
	release := pk.st&(pkClosed|pkReading|pkWriting|pkFdClosed) == pkClosed
	if release {
		pk.st |= pkFdClosed
	}
	pk.mu.Unlock()
	if release {
		pk.e.forgetPacket(pk)
		pk.e.closeSocket(pk.fd)
	}
}

// Flush writes the queued datagrams on the caller's goroutine, unless a
// goroutine already writes, which is told to look again.
func (pk *packet) Flush() {
	pk.mu.Lock()
	if pk.st&pkWriting != 0 {
		pk.st |= pkWAgain
		pk.mu.Unlock()
		return
	}
	pk.st |= pkWriting
	pk.mu.Unlock()
	pk.writeLoop(false)
}

// writeLoop sends the owner's datagrams one sendto(2) each; resume says a
// datagram waits in pend for the EPOLLOUT that just came. On EAGAIN the
// datagram waits there, and the poller goes on at the next edge.
func (pk *packet) writeLoop(resume bool) {
	for {
		var b []byte
		var to netip.AddrPort
		if resume {
			b, to, resume = pk.pend, pk.pendTo, false
			pk.pend = nil
		} else {
			pk.mu.Lock()
			pk.st &^= pkWAgain
			pk.mu.Unlock()
			var ok bool
			if b, to, ok = pk.owner.NextSend(); !ok {
				pk.mu.Lock()
				again := pk.st&pkWAgain != 0
				pk.mu.Unlock()
				if again {
					continue
				}
				pk.letGo(pkWriting)
				return
			}
		}
		sa, err := sockopt.UDPSockaddr(to, pk.v6)
		for err == nil {
			pk.mu.Lock()
			pk.st &^= pkWritable
			pk.mu.Unlock()
			pk.e.writes.Add(1)
			err = unix.Sendto(int(pk.fd), b, 0, sa)
			if err == unix.EINTR {
				err = nil
				continue
			}
			if err != unix.EAGAIN {
				break
			}
			pk.mu.Lock()
			if pk.st&pkWritable != 0 { // an edge came meanwhile: try again
				pk.mu.Unlock()
				err = nil
				continue
			}
			if pk.st&pkClosed == 0 {
				pk.pend, pk.pendTo = b, to
				pk.st |= pkWaitOut
				pk.mu.Unlock()
				return
			}
			pk.mu.Unlock()
			err = engine.ErrCanceled
		}
		pk.owner.SendDone(err)
	}
}

// Close marks the socket closed: a datagram waiting for EPOLLOUT
// completes with ErrCanceled, an armed receive ends, and the descriptor
// is closed once neither side uses it.
func (pk *packet) Close() {
	pk.mu.Lock()
	if pk.st&pkClosed != 0 {
		pk.mu.Unlock()
		return
	}
	pk.st |= pkClosed
	cancel := pk.st&pkWaitOut != 0
	pk.st &^= pkWaitOut
	pk.mu.Unlock()
	if cancel {
		pk.pend = nil
		pk.owner.SendDone(engine.ErrCanceled)
		pk.letGo(pkWriting)
	}
	pk.kickRead()
}
