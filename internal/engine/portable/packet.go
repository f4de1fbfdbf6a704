package portable

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// packet is a datagram socket: Go's *net.UDPConn, a goroutine reading
// while a receive is armed, and one writing while datagrams are queued.
type packet struct {
	e     *Engine
	uc    *net.UDPConn
	owner engine.PacketOwner
	once  sync.Once     // starts the reading goroutine
	wake  chan struct{} // capacity 1: the receive's state changed
}

// ListenPacket opens a datagram socket with net.ListenPacket.
func (e *Engine) ListenPacket(network, address string, owner engine.PacketOwner) (engine.PacketConn, error) {
	c, err := net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return &packet{e: e, uc: c.(*net.UDPConn), owner: owner, wake: make(chan struct{}, 1)}, nil
}

func (pk *packet) LocalAddr() net.Addr { return pk.uc.LocalAddr() }

func (pk *packet) Recv() {
	pk.once.Do(func() { pk.e.spawn(pk.readLoop) })
	poke(pk.wake)
}

// Release returns b to the pool; a multishot receive may go on.
func (pk *packet) Release(b *engine.Buf) {
	pk.e.bufs.Put(b)
	poke(pk.wake)
}

// readLoop reads a datagram whenever the receive is ready. Its blocked
// read holds a buffer; Close ends it.
func (pk *packet) readLoop() {
	for {
		select {
		case <-pk.wake:
			if st := pk.owner.RecvState(); st.Closed && !st.Armed {
				return // closed, and nothing to end
			}
		case <-pk.e.done:
			if pk.owner.RecvState().Armed {
				pk.owner.Deliver(nil, 0, 0, netipZero, engine.ErrCanceled)
			}
			return
		}
		for pk.owner.RecvState().Ready {
			b := pk.e.bufs.Get()
			n, from, err := pk.uc.ReadFromUDPAddrPort(b.B[:engine.PacketRoom(len(b.B))])
			if err != nil {
				pk.e.bufs.Put(b)
				if errors.Is(err, net.ErrClosed) {
					err = engine.ErrCanceled
				}
				pk.owner.Deliver(nil, 0, 0, netipZero, sockopt.NetError(err))
				if err == engine.ErrCanceled {
					return
				}
				continue
			}
			if !pk.owner.Deliver(b, 0, n, from, nil) {
				break
			}
		}
	}
}

// Flush writes the queued datagrams in a goroutine of its own, one at a
// time, until none is queued.
func (pk *packet) Flush() {
	pk.e.spawn(func() {
		for {
			b, to, ok := pk.owner.NextSend()
			if !ok {
				return
			}
			pk.e.writes.Add(1)
			_, err := pk.uc.WriteToUDPAddrPort(b, to)
			if errors.Is(err, net.ErrClosed) {
				err = engine.ErrCanceled
			}
			pk.owner.SendDone(sockopt.NetError(err))
		}
	})
}

// Close closes the socket: a blocked read returns, and the reading
// goroutine ends the receive; an armed receive whose goroutine waits is
// poked to find the socket closed.
func (pk *packet) Close() {
	pk.uc.Close()
	poke(pk.wake)
}

var netipZero netip.AddrPort
