package uring

import (
	"os"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
	"cport.dev/cport/internal/uring"
)

// The uring engine's sends.

// sendKind says which send of a connection's is in the kernel (uconn.send).
type sendKind uint8

const (
	sendNone sendKind = iota
	// sendOne is a send of one buffer (IORING_OP_SEND): its address and
	// length are in the SQE itself, so it needs no msghdr and no iovec. A
	// broadcast to thousands of idle connections is that case, once per
	// connection at the same time.
	sendOne
	// sendMany is a sendmsg, whose msghdr and iovecs are the loop's
	// sendArena's until the kernel has consumed the entry.
	sendMany
)

func (e *ringEngine) startSend(u *uconn) {
	if u.flags.has(fClosing) {
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
		u.send = sendOne
	} else {
		iov, _ := sockopt.AppendIovecs(e.arena.iovecs(len(e.batch)), e.batch)
		msg := e.arena.msghdr()
		msg.Iov = &iov[0]
		msg.SetIovlen(len(iov))
		s.PrepSendMsg(int(u.fd), msg, unix.MSG_NOSIGNAL|unix.MSG_WAITALL)
		u.send = sendMany
	}
	clear(e.batch) // the owner holds the messages until SendDone
	s.UserData = udata(ukSend, u.gen, u.slot)
	e.b.sends.Add(1)
	e.inflight++
	if e.ring.SQReady() >= burstSends {
		// A fan-out's burst: submit what it has so far, and handle the
		// completions there are, before it goes on.
		e.submit()
		e.reap()
	}
}

// burstSends is how many sends a burst (a round's fan-out, thousands of
// connections) prepares before the loop submits them and reaps: the
// receives that completed meanwhile go to the workers then, not after the
// whole burst. A closed-loop sender (one that sends again once it reads
// its own message back) is then not held back by the fan-out of its last
// message: at 10,000 clients (10 senders × window 8), reaping only when
// the submission queue (4,096 entries) filled, a send carried 38–41
// messages and the server spent 167–184 ns per delivery; reaping every
// 256 sends, 48–68 messages and 98–130 ns (docs/bench/REQUEST-RESPONSE.md,
// 2026-12-08).
const burstSends = 256

func (e *ringEngine) sendDone(u *uconn, cqe *uring.CQE) {
	kind := u.send
	u.send = sendNone
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
		if kind == sendOne {
			call = "send"
		}
		n, err = 0, os.NewSyscallError(call, unix.Errno(-res))
	}
	more := u.c.SendDone(n, err)
	if err != nil {
		e.breakConn(u, err)
	}
	if more {
		// Sent again at the round's end, not now: see sendAgain.
		u.flags.set(fSendNext)
		e.again = append(e.again, u)
		return
	}
	if u.flags.has(fShutWant) {
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
		u.flags.clear(fSendNext)
		e.startSend(u)
		if u.flags.has(fShutWant) && u.send == sendNone {
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
	if u.flags.has(fClosing | fBroken) {
		return
	}
	u.flags.set(fBroken)
	if e.shutdownSocket(int(u.fd), unix.SHUT_RDWR) != nil {
		e.endRecv(u, err)
	}
}
