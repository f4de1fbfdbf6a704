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
// each send, the array again whenever it grows.
type sendOp struct {
	msg    unix.Msghdr
	iov    []unix.Iovec
	bufs   [][]byte
	pin    runtime.Pinner
	pinned *unix.Iovec // the iovec array pin holds
}

func (e *ringEngine) startSend(u *uconn) {
	if u.closing {
		u.c.SendDone(0, engine.ErrCanceled)
		return
	}
	var op *sendOp
	if n := len(e.sendPool); n > 0 {
		op = e.sendPool[n-1]
		e.sendPool = e.sendPool[:n-1]
	} else {
		op = new(sendOp)
	}
	for {
		op.bufs = u.c.SendBatch(op.bufs[:0], maxIov)
		op.iov, _ = sockopt.AppendIovecs(op.iov[:0], op.bufs)
		if len(op.iov) > 0 {
			break
		}
		// Only empty messages: they are written by writing nothing.
		if !u.c.SendDone(0, nil) {
			e.sendPool = append(e.sendPool, op)
			return
		}
	}
	if iov := unsafe.SliceData(op.iov); iov != op.pinned {
		// A new sendOp, or its array grew.
		op.pin.Unpin()
		op.pin.Pin(op)
		op.pin.Pin(iov)
		op.pinned = iov
	}
	op.msg = unix.Msghdr{Iov: &op.iov[0]}
	op.msg.SetIovlen(len(op.iov))
	s := e.sqe()
	s.PrepSendMsg(u.fd, &op.msg, unix.MSG_NOSIGNAL|unix.MSG_WAITALL)
	s.UserData = udata(ukSend, u.gen, u.slot)
	u.send = op
	e.b.sends.Add(1)
	e.inflight++
}

func (e *ringEngine) sendDone(u *uconn, cqe *uring.CQE) {
	op := u.send
	u.send = nil
	e.inflight--
	n, err := int(cqe.Res), error(nil)
	if n < 0 {
		n, err = 0, os.NewSyscallError("sendmsg", unix.Errno(-cqe.Res))
	}
	// Drop the references to the Msgs' bytes before they go back to a pool.
	clear(op.bufs)
	clear(op.iov)
	op.msg = unix.Msghdr{}
	if len(e.sendPool) < maxFreeSendOps {
		e.sendPool = append(e.sendPool, op)
	} else {
		op.pin.Unpin()
	}
	more := u.c.SendDone(n, err)
	if err != nil && !u.closing && !u.broken {
		// Break the connection so that its receive ends with the error.
		u.broken = true
		unix.Shutdown(u.fd, unix.SHUT_RDWR)
	}
	if more {
		e.startSend(u)
	}
	if u.shutWant && u.send == nil {
		e.shutdownConn(u)
	}
}
