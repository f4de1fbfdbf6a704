package engine

import (
	"sync/atomic"
	"syscall"
)

// Call names a system call an engine issues on behalf of a socket, for
// [Faults]. Each engine maps its own calls onto these.
type Call uint8

const (
	CallAccept   Call = iota // accept4(2); io_uring's accept; AcceptEx; net.Listener.Accept
	CallRecv                 // read(2); io_uring's recv; WSARecv; a read of net.Conn
	CallSend                 // writev(2); io_uring's sendmsg; WSASend; a write of net.Conn
	CallShutdown             // shutdown(2) of the writing side
	CallClose                // close(2); closesocket
	CallPoll                 // registering a socket or waking the loop: epoll_ctl(2); io_uring_enter(2); CreateIoCompletionPort
	numCalls
)

var callNames = [numCalls]string{"accept", "recv", "send", "shutdown", "close", "poll"}

// String returns the call's name.
func (c Call) String() string {
	if c < numCalls {
		return callNames[c]
	}
	return "call?"
}

// Faults makes an engine's system calls fail on demand, so that tests can
// show what a port does when the kernel says no: a test arms a call with an
// errno and a count, and the engine's next calls of that kind fail with it.
// An engine asks Fail before each call it issues (io_uring: as it handles
// each completion) and, when told to fail, behaves as if the kernel had
// returned the errno: it does not issue the call, or, where the kernel has
// already done the work (an io_uring completion, a close), it undoes what
// it can (closes an accepted socket) and reports the errno instead.
//
// Config.Faults is nil outside tests; Fail on a nil *Faults reports
// nothing, so that an engine's production path pays one nil check.
type Faults struct {
	calls [numCalls]fault
}

type fault struct {
	armed atomic.Int64   // calls left to fail
	errno atomic.Uintptr // what they fail with
	hits  atomic.Int64   // calls failed so far
}

// Arm makes the next n calls of kind c fail with errno, replacing what was
// armed for c before.
func (f *Faults) Arm(c Call, errno syscall.Errno, n int) {
	f.calls[c].errno.Store(uintptr(errno))
	f.calls[c].armed.Store(int64(n))
}

// Fail reports the errno the call of kind c about to be issued fails
// with, or 0 for none: the engine issues the call as usual.
func (f *Faults) Fail(c Call) syscall.Errno {
	if f == nil {
		return 0
	}
	x := &f.calls[c]
	for {
		n := x.armed.Load()
		if n <= 0 {
			return 0
		}
		if x.armed.CompareAndSwap(n, n-1) {
			x.hits.Add(1)
			return syscall.Errno(x.errno.Load())
		}
	}
}

// Hits returns how many calls of kind c failed by Faults so far.
func (f *Faults) Hits(c Call) int64 {
	return f.calls[c].hits.Load()
}
