package uring

// The uring engine's datagram sockets (UDP): see doc.go, "Datagram
// sockets".

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// errRecvmsg refuses a datagram socket on a kernel without
// IORING_OP_RECVMSG.
var errRecvmsg = fmt.Errorf("cport uring: UDP not supported: the kernel lacks IORING_OP_RECVMSG: %w", engine.ErrUnsupported)

// upacket is a datagram socket, the engine.PacketConn package cport holds.
// Its fields are the loop's but for those set before it is published.
type upacket struct {
	owner engine.PacketOwner
	e     *ringEngine
	fd    int32
	v6    bool // AF_INET6: sockaddrs are sockaddr_in6
	addr  *net.UDPAddr
	slot  uint32 // in e.pks from its first request (noSlot until then)
	gen   uint32

	recvOn   bool // a receive is in the kernel
	multi    bool // it is multishot
	recvStop bool // the multishot receive is being canceled: the owner is full
	sendOn   bool // a sendmsg is in the kernel
	closing  bool // Close was asked: finish once quiet
	cancelOn bool // the cancel of everything is in the kernel
	starving bool // in e.pkStarved: the receive waits for buffers

	// The memory the kernel holds, pinned while the socket is in the
	// loop's table: the msghdr of the receive (multishot: a template,
	// read at submission; single: its sockaddr, written at the CQE) and
	// of the send (read at submission with IORING_FEAT_SUBMIT_STABLE, its
	// sockaddr and iovec too; the datagram's bytes until the CQE).
	rmsg  unix.Msghdr
	riov  unix.Iovec
	rname unix.RawSockaddrAny
	smsg  unix.Msghdr
	siov  unix.Iovec
	sname unix.RawSockaddrAny
	sbuf  []byte // the datagram in flight, NextSend's: the owner keeps it until SendDone
	pin   runtime.Pinner
}

// recvmsgOut is io_uring_recvmsg_out, the header the kernel writes at the
// start of a multishot IORING_OP_RECVMSG's buffer, followed by the
// sender's sockaddr (the template's msg_namelen bytes, reserved whatever
// its length), the control data (none here) and the payload.
type recvmsgOut struct {
	namelen    uint32
	controllen uint32
	payloadlen uint32
	flags      uint32
}

const (
	recvmsgOutSize = int(unsafe.Sizeof(recvmsgOut{}))
	pkNameLen      = unix.SizeofSockaddrInet6 // room for either family's sockaddr
	pkPayloadOff   = recvmsgOutSize + pkNameLen
)

// ListenPacket opens a non-blocking UDP socket in the rings taken in turn.
// A kernel without IORING_OP_RECVMSG is an error naming the engine.
func (b *portEngine) ListenPacket(network, address string, owner engine.PacketOwner) (engine.PacketConn, error) {
	e := b.rings[int(b.nextPacket.Add(1))%len(b.rings)]
	if !e.recvmsg {
		return nil, errRecvmsg
	}
	fd, bound, v6, err := sockopt.ListenUDP(network, address)
	if err != nil {
		return nil, err
	}
	return &upacket{owner: owner, e: e, fd: int32(fd), v6: v6, addr: bound, slot: noSlot}, nil
}

func (pk *upacket) LocalAddr() net.Addr { return pk.addr }

func (pk *upacket) Recv() { pk.e.post(ureq{op: rqPkRecv, x: pk}, true) }
func (pk *upacket) Release(b *engine.Buf) {
	if b.ID != noBuf {
		pk.e.recvReleased(b)
	}
}

// noBuf is the Buf.ID of an empty datagram's buffer, the engine's own
// rather than the ring's.
const noBuf = -2

func (pk *upacket) Flush() { pk.e.post(ureq{op: rqPkFlush, x: pk}, true) }
func (pk *upacket) Close() { pk.e.post(ureq{op: rqPkClose, x: pk}, true) }

// adoptPacket gives pk a slot in the loop's table and pins its memory.
func (e *ringEngine) adoptPacket(pk *upacket) {
	if n := len(e.freePk); n > 0 {
		pk.slot = e.freePk[n-1]
		e.freePk = e.freePk[:n-1]
		e.pkGens[pk.slot]++
	} else {
		pk.slot = uint32(len(e.pks))
		e.pks = append(e.pks, nil)
		e.pkGens = append(e.pkGens, 0)
	}
	pk.gen = e.pkGens[pk.slot] & 0xffffff
	e.pks[pk.slot] = pk
	pk.pin.Pin(pk)
}

// handlePacket runs the request op of the datagram socket pk on the loop.
func (e *ringEngine) handlePacket(op uint8, pk *upacket) {
	if pk.slot == noSlot {
		if pk.fd < 0 {
			return // finished already
		}
		e.adoptPacket(pk)
	}
	switch op {
	case rqPkRecv:
		e.armPacketRecv(pk)
	case rqPkFlush:
		e.startPacketSend(pk)
	case rqPkClose:
		e.closePacket(pk)
	}
}

// armPacketRecv puts pk's receive in the kernel, if the owner armed it and
// is not full: a multishot IORING_OP_RECVMSG for a multishot receive, a
// single one otherwise, both taking a buffer from the ring's provided
// buffers when a datagram arrives.
func (e *ringEngine) armPacketRecv(pk *upacket) {
	if pk.recvOn || pk.closing || pk.starving {
		return
	}
	// Armed, not Ready: a multishot receive runs ahead of the owner's
	// releases, into its backlog, until the owner says it is full.
	st := pk.owner.RecvState()
	if !st.Armed || st.Full || st.Closed {
		return
	}
	s := e.sqe()
	if st.Multi {
		pk.rmsg = unix.Msghdr{Namelen: pkNameLen}
		s.PrepRecvMsg(int(pk.fd), &pk.rmsg, 0)
		s.Ioprio |= uring.IORING_RECV_MULTISHOT
	} else {
		pk.riov = unix.Iovec{}
		pk.riov.SetLen(engine.PacketRoom(e.bufs.BufSize()))
		pk.rmsg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&pk.rname)), Namelen: pkNameLen, Iov: &pk.riov, Iovlen: 1}
		s.PrepRecvMsg(int(pk.fd), &pk.rmsg, 0)
	}
	s.Flags |= uring.IOSQE_BUFFER_SELECT
	s.BufIndex = e.bufs.Group()
	s.UserData = udata(ukPkRecv, pk.gen, pk.slot)
	pk.recvOn, pk.multi = true, st.Multi
	e.inflight++
}

func (e *ringEngine) packetRecvDone(pk *upacket, cqe *uring.CQE) {
	more := cqe.Flags&uring.IORING_CQE_F_MORE != 0
	if !more {
		pk.recvOn = false
		e.inflight--
	}
	res := cqe.Res
	switch {
	case res == 0 && cqe.Flags&uring.IORING_CQE_F_BUFFER == 0:
		// An empty datagram of a single receive, for which the kernel
		// took no buffer: it is delivered in one of its own, which no
		// ring holds (noBuf).
		if !pk.closing {
			pk.owner.Deliver(&engine.Buf{B: []byte{}, ID: noBuf}, 0, 0, sockopt.RawAddrPort(unsafe.Pointer(&pk.rname), pkNameLen), nil)
		}
	case res >= 0 && pk.closing:
		e.recycle(cqe)
	case res >= 0:
		b := &e.rbufs[cqe.Flags>>uring.IORING_CQE_BUFFER_SHIFT]
		off, n := 0, int(res)
		var from netip.AddrPort
		if pk.multi {
			out := (*recvmsgOut)(unsafe.Pointer(&b.B[0]))
			from = sockopt.RawAddrPort(unsafe.Pointer(&b.B[recvmsgOutSize]), min(out.namelen, pkNameLen))
			off, n = pkPayloadOff+int(out.controllen), min(int(out.payloadlen), engine.PacketRoom(len(b.B)))
		} else {
			from = sockopt.RawAddrPort(unsafe.Pointer(&pk.rname), pkNameLen)
		}
		e.lend()
		if !pk.owner.Deliver(b, off, n, from, nil) && more {
			e.stopPacketRecv(pk)
		}
	case unix.Errno(-res) == unix.ENOBUFS:
		if !pk.starving { // as a stream's receive (recv_linux.go)
			pk.starving = true
			e.b.starved.Add(1)
			e.pkStarved = append(e.pkStarved, pk)
			e.hungry.Store(true)
		}
		return
	case unix.Errno(-res) == unix.ECANCELED && (pk.recvStop || pk.closing):
		// Stopped for a full owner, who starts it again; or closed.
	case interrupted(unix.Errno(-res)):
	default:
		pk.owner.Deliver(nil, 0, 0, netip.AddrPort{}, os.NewSyscallError("recvmsg", unix.Errno(-res)))
	}
	if !more {
		pk.recvStop = false
		e.armPacketRecv(pk)
	}
}

// stopPacketRecv cancels the multishot receive of an owner that holds all
// it may; what comes until its last CQE is still delivered.
func (e *ringEngine) stopPacketRecv(pk *upacket) {
	if !pk.recvOn || pk.recvStop || pk.closing {
		return
	}
	pk.recvStop = true
	s := e.sqe()
	if !pk.recvOn { // a reap inside sqe took its last CQE
		s.PrepNop()
		s.UserData = 0
		return
	}
	s.PrepCancel(udata(ukPkRecv, pk.gen, pk.slot), 0)
	s.UserData = udata(ukPkCancel, pk.gen, pk.slot)
	pk.cancelOn = true
	e.inflight++
}

// startPacketSend submits the next queued datagram as an IORING_OP_SENDMSG
// with its destination, unless one is in the kernel.
func (e *ringEngine) startPacketSend(pk *upacket) {
	for !pk.sendOn && !pk.closing {
		b, to, ok := pk.owner.NextSend()
		if !ok {
			return
		}
		salen, err := sockopt.PutUDPSockaddr(&pk.sname, to, pk.v6)
		if err != nil {
			pk.owner.SendDone(err)
			continue
		}
		pk.sbuf = b
		pk.siov = unix.Iovec{}
		if len(b) > 0 {
			pk.siov.Base = &b[0]
		}
		pk.siov.SetLen(len(b))
		pk.smsg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&pk.sname)), Namelen: salen, Iov: &pk.siov, Iovlen: 1}
		s := e.sqe()
		s.PrepSendMsg(int(pk.fd), &pk.smsg, unix.MSG_NOSIGNAL)
		s.UserData = udata(ukPkSend, pk.gen, pk.slot)
		pk.sendOn = true
		e.inflight++
		e.b.sends.Add(1)
	}
}

func (e *ringEngine) packetSendDone(pk *upacket, cqe *uring.CQE) {
	pk.sendOn = false
	pk.sbuf = nil
	e.inflight--
	var err error
	switch {
	case cqe.Res >= 0:
	case pk.closing && unix.Errno(-cqe.Res) == unix.ECANCELED:
		err = engine.ErrCanceled
	default:
		err = os.NewSyscallError("sendmsg", unix.Errno(-cqe.Res))
	}
	pk.owner.SendDone(err)
	e.startPacketSend(pk)
}

// closePacket cancels what the kernel holds of pk; its socket is closed
// once the last CQE is in.
func (e *ringEngine) closePacket(pk *upacket) {
	if pk.closing {
		return
	}
	pk.closing = true
	if pk.recvOn || pk.sendOn {
		s := e.sqe()
		if pk.recvOn || pk.sendOn {
			s.PrepCancelFD(int(pk.fd), uring.IORING_ASYNC_CANCEL_ALL)
			s.UserData = udata(ukPkCancel, pk.gen, pk.slot)
			pk.cancelOn = true
			e.inflight++
		} else {
			s.PrepNop()
			s.UserData = 0
		}
	}
	e.finishPacketIfQuiet(pk)
}

// finishPacketIfQuiet closes a closing socket and frees its slot once the
// kernel holds nothing of it; an armed receive ends with ErrCanceled.
func (e *ringEngine) finishPacketIfQuiet(pk *upacket) {
	if !pk.closing || pk.recvOn || pk.sendOn || pk.cancelOn || pk.fd < 0 {
		return
	}
	if pk.owner.RecvState().Armed {
		pk.owner.Deliver(nil, 0, 0, netip.AddrPort{}, engine.ErrCanceled)
	}
	e.closeFD(int(pk.fd))
	pk.fd = -1
	if pk.starving {
		for i, x := range e.pkStarved {
			if x == pk {
				e.pkStarved = append(e.pkStarved[:i], e.pkStarved[i+1:]...)
				break
			}
		}
		pk.starving = false
	}
	e.pks[pk.slot] = nil
	e.freePk = append(e.freePk, pk.slot)
	pk.pin.Unpin()
}

// completePacket handles a CQE of a datagram socket.
func (e *ringEngine) completePacket(kind uint64, gen, slot uint32, cqe *uring.CQE) {
	if int(slot) >= len(e.pks) {
		return
	}
	pk := e.pks[slot]
	if pk == nil || pk.gen != gen {
		return
	}
	switch kind {
	case ukPkRecv:
		e.packetRecvDone(pk, cqe)
	case ukPkSend:
		e.packetSendDone(pk, cqe)
	case ukPkCancel:
		pk.cancelOn = false
		e.inflight--
	}
	e.finishPacketIfQuiet(pk)
}

// feedStarvedPackets re-arms the receives that waited for buffers.
func (e *ringEngine) feedStarvedPackets() {
	list := e.pkStarved
	e.pkStarved = e.pkStarved[:0]
	for _, pk := range list {
		pk.starving = false
		e.armPacketRecv(pk)
	}
}
