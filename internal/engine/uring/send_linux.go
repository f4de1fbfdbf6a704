package uring

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// The uring engine's sends.

// sendOp is the memory a sendmsg hands the kernel: the msghdr, in the
// sendOp, and the iovec array it points to. Both are pinned while the
// sendOp is the loop's (in flight or in the pool): pinned once, not at
// each send, the array again whenever it grows. An array grown past
// keptIov entries is dropped at the send's CQE, and the sendOp waits in the
// pool unpinned, to be pinned again with a fresh array at its next use.
type sendOp struct {
	msg    unix.Msghdr
	iov    []unix.Iovec
	bufs   [][]byte
	pin    runtime.Pinner
	pinned *unix.Iovec // the iovec array pin holds
}

// keptIov is the most iovecs (and message slices) a pooled sendOp keeps
// room for: a burst's sendmsg carries up to maxIov, whose arrays (40 KiB)
// a pool of maxFreeSendOps would otherwise keep for good, each.
const keptIov = 16

// oneBuf stands in u.send for a send of one buffer (IORING_OP_SEND): its
// address and length are in the SQE itself, so it needs no msghdr, no
// iovec and no sendOp. A broadcast to thousands of idle connections is
// that case, once per connection at the same time: with a sendOp each,
// it allocated 324 B per connection (9,000 connections) against epoll's
// 60. The buffer is the connection's: its owner keeps it until SendDone.
var oneBuf sendOp

func (e *ringEngine) startSend(u *uconn) {
	if u.closing {
		u.c.SendDone(0, engine.ErrCanceled)
		return
	}
	var one []byte // the batch's only non-empty buffer, if it has one only
	n := 0         // its non-empty buffers
	for {
		e.batch = u.c.SendBatch(e.batch[:0], maxIov)
		for _, b := range e.batch {
			if len(b) > 0 {
				one = b
				n++
			}
		}
		if n > 0 {
			break
		}
		// Only empty messages: they are written by writing nothing.
		if !u.c.SendDone(0, nil) {
			clear(e.batch)
			return
		}
	}
	s := e.sqe()
	if n == 1 {
		s.PrepSend(int(u.fd), one, unix.MSG_NOSIGNAL|unix.MSG_WAITALL)
		u.send = &oneBuf
	} else {
		var op *sendOp
		if k := len(e.sendPool); k > 0 {
			op = e.sendPool[k-1]
			e.sendPool = e.sendPool[:k-1]
		} else {
			op = new(sendOp)
		}
		op.bufs = append(op.bufs[:0], e.batch...)
		op.iov, _ = sockopt.AppendIovecs(op.iov[:0], op.bufs)
		if iov := unsafe.SliceData(op.iov); iov != op.pinned {
			// A new sendOp, or its array grew.
			op.pin.Unpin()
			op.pin.Pin(op)
			op.pin.Pin(iov)
			op.pinned = iov
		}
		op.msg = unix.Msghdr{Iov: &op.iov[0]}
		op.msg.SetIovlen(len(op.iov))
		s.PrepSendMsg(int(u.fd), &op.msg, unix.MSG_NOSIGNAL|unix.MSG_WAITALL)
		u.send = op
	}
	clear(e.batch) // the owner holds the messages until SendDone
	s.UserData = udata(ukSend, u.gen, u.slot)
	e.b.sends.Add(1)
	e.inflight++
}

func (e *ringEngine) sendDone(u *uconn, cqe *uring.CQE) {
	op := u.send
	u.send = nil
	e.inflight--
	res := cqe.Res
	if f := e.b.cfg.Faults; f != nil && res != -int32(unix.ECANCELED) {
		if errno := f.Fail(engine.CallSend); errno != 0 && !(res > 0 && interrupted(errno)) {
			// (An interrupted call that wrote stands for one the
			// kernel made again.) Else the write fails, though its
			// bytes may have gone out, as after a real partial write.
			res = -int32(errno)
		}
	}
	n, err := int(res), error(nil)
	switch {
	case n >= 0:
	case interrupted(unix.Errno(-res)):
		n = 0 // nothing written: SendDone says more, and it is written again
	default:
		call := "sendmsg"
		if op == &oneBuf {
			call = "send"
		}
		n, err = 0, os.NewSyscallError(call, unix.Errno(-res))
	}
	if op != &oneBuf {
		e.putSendOp(op)
	}
	more := u.c.SendDone(n, err)
	if err != nil {
		e.breakConn(u, err)
	}
	if more {
		// Sent again at the round's end, not now: see sendAgain.
		u.sendNext = true
		e.again = append(e.again, u)
		return
	}
	if u.shutWant {
		e.shutdownConn(u)
	}
}

// sendAgain starts the next send of each connection whose send completed
// in this round with more queued. A connection is sent to once per round
// of the loop, whatever the number of connections, as epoll's flushers
// write each once per round of their FIFO: the messages queued to it
// meanwhile go out together. (Started from the reap instead, the sends
// of a round larger than the submission queue, submitted when it filled,
// completed within the same reap, and their connections were sent to
// again and again with what a few milliseconds had queued: at 10,000
// clients, a write carried fewer messages on uring than on epoll.)
func (e *ringEngine) sendAgain() {
	if len(e.again) == 0 {
		return
	}
	run := e.again
	// A send that completes during this (in a reap that startSend makes
	// when the kernel refuses a full submission queue) joins the list of
	// the next round.
	e.again = e.againRun[:0]
	for _, u := range run {
		u.sendNext = false
		e.startSend(u)
		if u.shutWant && u.send == nil {
			e.shutdownConn(u)
		}
		e.finishIfQuiet(u) // closed meanwhile: its close waited for this
	}
	clear(run)
	e.againRun = run[:0]
}

// breakConn breaks u, whose send failed with err, so that its receive
// ends with the error: it shuts the socket down or, should the socket
// refuse, ends the receive here.
func (e *ringEngine) breakConn(u *uconn, err error) {
	if u.closing || u.broken {
		return
	}
	u.broken = true
	if e.shutdownSocket(int(u.fd), unix.SHUT_RDWR) != nil {
		e.endRecv(u, err)
	}
}

// putSendOp takes back op, whose send has its CQE: the kernel's last word
// on the msghdr and the iovecs. It drops the references to the messages'
// bytes before they go back to a pool, and a burst's arrays, and keeps op
// for reuse while the pool has room.
func (e *ringEngine) putSendOp(op *sendOp) {
	clear(op.bufs)
	clear(op.iov)
	op.msg = unix.Msghdr{}
	if cap(op.iov) > keptIov || cap(op.bufs) > keptIov {
		op.pin.Unpin()
		op.iov, op.bufs, op.pinned = nil, nil, nil
	}
	if len(e.sendPool) < maxFreeSendOps {
		e.sendPool = append(e.sendPool, op)
	} else {
		op.pin.Unpin()
	}
}
