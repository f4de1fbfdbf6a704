package uring

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// CQE mirrors struct io_uring_cqe (16 bytes; rings are never created with
// IORING_SETUP_CQE32).
type CQE struct {
	UserData uint64 // the SQE's UserData
	Res      int32  // result: a count or descriptor, or a negated errno
	Flags    uint32 // IORING_CQE_F_*, and the buffer id in the upper 16 bits
}

// Errno returns the error carried by a negative Res, or 0.
func (c CQE) Errno() unix.Errno {
	if c.Res >= 0 {
		return 0
	}
	return unix.Errno(-c.Res)
}

// Err returns the error carried by a negative Res as an error, or nil.
func (c CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return unix.Errno(-c.Res)
}

// More reports IORING_CQE_F_MORE: the multishot request that posted this CQE
// is still armed. Without it, the request is finished and must be re-armed.
func (c CQE) More() bool { return c.Flags&IORING_CQE_F_MORE != 0 }

// HasBuffer reports IORING_CQE_F_BUFFER: the request consumed the provided
// buffer BufferID, which the caller must return (BufRing.Recycle).
func (c CQE) HasBuffer() bool { return c.Flags&IORING_CQE_F_BUFFER != 0 }

// BufferID returns the provided buffer id; meaningful only if HasBuffer.
func (c CQE) BufferID() uint16 { return uint16(c.Flags >> IORING_CQE_BUFFER_SHIFT) }

// CQReady returns the number of completions ready to be reaped.
func (r *Ring) CQReady() uint32 { return atomic.LoadUint32(r.cqKTail) - r.cqHead }

// PeekBatch copies up to len(dst) ready completions, oldest first, into dst
// and returns how many it copied. They stay in the queue until Advance.
//
// PeekBatch makes no system call. Completions parked on the kernel's overflow
// list (IORING_SQ_CQ_OVERFLOW) or waiting for deferred task work
// (IORING_SQ_TASKRUN) become visible at the next Submit or SubmitAndWait*,
// which enter the kernel for them when those flags are set.
func (r *Ring) PeekBatch(dst []CQE) int {
	// Acquire: entries before tail are fully written.
	tail := atomic.LoadUint32(r.cqKTail)
	n := min(tail-r.cqHead, uint32(len(dst)))
	for i := range n {
		dst[i] = r.cqes[(r.cqHead+i)&r.cqMask]
	}
	return int(n)
}

// Advance consumes n completions, handing their slots back to the kernel. n
// must not exceed CQReady.
func (r *Ring) Advance(n uint32) {
	if n > r.CQReady() {
		panic("uring: Advance past the completion queue tail")
	}
	r.advance(n)
}

func (r *Ring) advance(n uint32) {
	if n == 0 {
		return
	}
	r.cqHead += n
	// Release: our reads of the consumed entries happen before the kernel
	// may overwrite them.
	atomic.StoreUint32(r.cqKHead, r.cqHead)
}

// ForEachCQE calls fn for each ready completion, oldest first, until fn
// returns false, and consumes the completions it was called with (including
// the one that returned false). It returns how many it consumed. The CQE
// points into the ring and is only valid during the call; fn may get and
// submit SQEs but must not reap (PeekBatch, Advance, ForEachCQE).
func (r *Ring) ForEachCQE(fn func(*CQE) bool) int {
	tail := atomic.LoadUint32(r.cqKTail)
	var n uint32
	for head := r.cqHead; head != tail; head++ {
		n++
		if !fn(&r.cqes[head&r.cqMask]) {
			break
		}
	}
	r.advance(n)
	return int(n)
}
