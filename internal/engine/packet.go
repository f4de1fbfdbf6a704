package engine

import (
	"net"
	"net/netip"
)

// PacketEngine is an Engine with datagram sockets (UDP). An engine that
// lacks them does not implement it, and package cport reports an error
// wrapping ErrUnsupported that names the engine.
type PacketEngine interface {
	// ListenPacket opens a datagram socket ("udp", "udp4" or "udp6")
	// bound to address, as net.ListenPacket binds it, whose receives and
	// sends report to owner. Errors are the system's.
	ListenPacket(network, address string, owner PacketOwner) (PacketConn, error)
}

// PacketHeadroom is what a datagram receive keeps of a Buf for the
// engine's own use (io_uring's io_uring_recvmsg_out header and the
// sender's sockaddr, in front of a multishot receive's payload): every
// engine truncates a datagram to len(Buf.B)-PacketHeadroom bytes, so that
// none differs from another in what it delivers.
const PacketHeadroom = 64

// PacketRoom returns the payload a receive buffer of size bytes holds.
func PacketRoom(size int) int { return size - PacketHeadroom }

// PacketConn is an engine's datagram socket.
//
// Receives: the engine receives as PacketOwner.RecvState says (armed,
// multishot, ready), one datagram per PacketOwner.Deliver. Sends: one
// datagram is in flight at a time; after Flush the engine takes the
// datagrams with PacketOwner.NextSend, writes each and reports it with
// PacketOwner.SendDone, until NextSend has none. The bytes and address
// NextSend returns stay valid until SendDone.
type PacketConn interface {
	// LocalAddr returns the address the socket is bound to.
	LocalAddr() net.Addr
	// Recv starts the receive that RecvState describes, if the engine has
	// not already.
	Recv()
	// Release gives back a buffer handed over with Deliver.
	Release(b *Buf)
	// Flush starts writing the queued datagrams: the queue became
	// non-empty while no write was in flight.
	Flush()
	// Close closes the socket. A receive in progress ends with
	// Deliver(nil, 0, 0, {}, ErrCanceled) and a send in progress with
	// SendDone, once the kernel has let go of their memory.
	Close()
}

// PacketOwner is package cport's side of a datagram socket.
type PacketOwner interface {
	// RecvState says where the receive stands (see RecvState).
	RecvState() RecvState
	// Deliver completes the receive with the datagram of n bytes (zero is
	// a datagram too) at b.B[off:off+n], sent from from; or, with b nil,
	// ends it with err (ErrCanceled once the socket is closed). b is the
	// user's from then on. It reports whether the receive goes on.
	Deliver(b *Buf, off, n int, from netip.AddrPort, err error) bool
	// NextSend returns the next datagram to write and its destination,
	// valid until SendDone; ok false when none is queued, which ends the
	// engine's writing until the next Flush.
	NextSend() (b []byte, to netip.AddrPort, ok bool)
	// SendDone reports the write of the datagram NextSend returned, with
	// the system's error or nil.
	SendDone(err error)
}
