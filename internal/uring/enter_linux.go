package uring

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Submit hands the prepared SQEs to the kernel and returns how many it
// consumed. It calls io_uring_enter(2) only when there is something to
// submit or when the SQ flags ask for a flush of overflowed completions or
// deferred task work (then with IORING_ENTER_GETEVENTS, which does it).
//
// Errors are ring-level (a failing request reports its error in its CQE):
// EAGAIN and EBUSY mean the kernel is short of resources or the completion
// queue needs reaping first; EEXIST means a SINGLE_ISSUER ring was entered
// from the wrong thread; EBADR means completions were dropped. EINTR is
// retried.
func (r *Ring) Submit() (int, error) { return r.enter(0, false, 0) }

// SubmitAndWait submits like Submit and then blocks until at least n
// completions are ready to be reaped (CQReady() >= n); n is capped at
// CQEntries. The count of submitted SQEs is valid even with an error.
func (r *Ring) SubmitAndWait(n uint32) (int, error) { return r.enter(n, false, 0) }

// SubmitAndWaitTimeout is SubmitAndWait bounded by timeout. When the time
// runs out before n completions are ready it returns an error wrapping
// unix.ETIME, together with the count of SQEs it did submit. It needs
// IORING_FEAT_EXT_ARG (5.11+) and returns an error wrapping unix.EOPNOTSUPP
// without it.
func (r *Ring) SubmitAndWaitTimeout(n uint32, timeout time.Duration) (int, error) {
	return r.enter(n, true, timeout)
}

// flushSQ publishes the SQEs handed out by GetSQE and returns how many the
// kernel has yet to consume.
func (r *Ring) flushSQ() uint32 {
	// Release: the SQE contents are visible before the new tail.
	if atomic.LoadUint32(r.sqKTail) != r.sqTail {
		atomic.StoreUint32(r.sqKTail, r.sqTail)
	}
	return r.sqTail - atomic.LoadUint32(r.sqKHead)
}

// cqNeedsEnter reports whether completions are held in the kernel until the
// next io_uring_enter with GETEVENTS.
func (r *Ring) cqNeedsEnter() bool {
	return atomic.LoadUint32(r.sqKFlags)&(IORING_SQ_CQ_OVERFLOW|IORING_SQ_TASKRUN) != 0
}

// CQOverflowed reports whether completions wait on the kernel's overflow
// list: the completion queue was full when they came.
func (r *Ring) CQOverflowed() bool {
	return atomic.LoadUint32(r.sqKFlags)&IORING_SQ_CQ_OVERFLOW != 0
}

func (r *Ring) enter(waitNr uint32, timed bool, timeout time.Duration) (int, error) {
	if timed && r.features&IORING_FEAT_EXT_ARG == 0 {
		return 0, fmt.Errorf("io_uring_enter: timed wait needs IORING_FEAT_EXT_ARG: %w", unix.EOPNOTSUPP)
	}
	var deadline time.Time
	if timed {
		deadline = time.Now().Add(timeout)
	}
	// More completions than the CQ holds can never be ready at once.
	waitNr = min(waitNr, r.cqEntries)
	submitted := 0
	for {
		toSubmit := r.flushSQ()
		var flags, minComplete uint32
		if r.cqNeedsEnter() || (waitNr > 0 && r.CQReady() < waitNr) {
			flags, minComplete = IORING_ENTER_GETEVENTS, waitNr
		}
		if toSubmit == 0 && flags == 0 {
			return submitted, nil
		}
		var arg unsafe.Pointer
		var argSz uintptr
		if timed && minComplete > 0 {
			d := max(time.Until(deadline), 0)
			r.waitTS = Timespec{Sec: int64(d / time.Second), Nsec: int64(d % time.Second)}
			r.waitArg = getEventsArg{sigmaskSz: sigsetSize, ts: uint64(uintptr(unsafe.Pointer(&r.waitTS)))}
			arg, argSz = unsafe.Pointer(&r.waitArg), unsafe.Sizeof(r.waitArg)
			flags |= IORING_ENTER_EXT_ARG
		}
		n, err := sysEnter(r.fd, toSubmit, minComplete, flags, arg, argSz)
		// The kernel reads r.waitArg and, through it, r.waitTS: keep the
		// Ring that holds both reachable until the call has returned.
		runtime.KeepAlive(r)
		if err == unix.EINTR {
			// A signal cut the wait short before anything was submitted
			// (the kernel reports the count instead when it submitted).
			continue
		}
		if err != nil {
			return submitted, fmt.Errorf("io_uring_enter: %w", err)
		}
		submitted += n
		if waitNr == 0 || r.CQReady() >= waitNr {
			return submitted, nil
		}
		// The wait was cut short after submitting, or ended with fewer
		// than waitNr completions: wait again unless time is up.
		if timed && !time.Now().Before(deadline) {
			return submitted, fmt.Errorf("io_uring_enter: %w", unix.ETIME)
		}
	}
}
