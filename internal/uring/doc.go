// Package uring is a small, pure-Go io_uring layer over golang.org/x/sys/unix.
//
// It is the Linux substrate of the completion-port backend: it creates a ring
// (io_uring_setup(2)), lets its owner fill submission queue entries (SQEs),
// publishes and submits them (io_uring_enter(2)), and reaps completion queue
// entries (CQEs). It also probes opcode support and registers provided-buffer
// rings (io_uring_register(2)). On other operating systems the package is
// empty.
//
// # Model
//
// A Ring is two queues shared with the kernel. The owner obtains an SQE with
// GetSQE, fills it with one of the SQE.Prep* methods and sets SQE.UserData
// (an opaque uint64 the caller encodes, for example an index and a
// generation; never a Go pointer), then calls Submit or one of the
// SubmitAndWait variants. Completions are read with PeekBatch (copy out, then
// Advance) or ForEachCQE, and each carries the UserData of its request.
// Multishot requests (PrepAcceptMultishot, PrepRecvMultishot) post many CQEs;
// the last one lacks IORING_CQE_F_MORE and the request must then be re-armed.
//
// # Threads
//
// A Ring is not safe for concurrent use. By default Setup asks for
// IORING_SETUP_SINGLE_ISSUER|IORING_SETUP_DEFER_TASKRUN. The kernel then
// binds the ring to the thread that created it: submissions and
// io_uring_register(2) calls (Probe, RegisterBufRing, BufRing.Close) from
// any other thread fail with EEXIST (io_uring_setup(2)), and completions are
// only processed when that thread enters the kernel with
// IORING_ENTER_GETEVENTS (Submit, SubmitAndWait). The owning goroutine
// must therefore call runtime.LockOSThread before Setup, stay locked until it
// is done with the ring, and do both submission and completion itself. Close
// may run on any thread.
//
// Other goroutines wake the owner by writing to an eventfd that the owner
// reads through the ring (PrepRead), or by posting a CQE into it with
// IORING_OP_MSG_RING from another ring (PrepMsgRing), for example one created
// with Options.Shared and guarded by a mutex.
//
// # Memory ordering
//
// The queue indices live in memory mapped from the ring. This package writes
// the SQ tail and the CQ head with sync/atomic stores (release) after filling
// SQEs or reading CQEs, and reads the SQ head and CQ tail with sync/atomic
// loads (acquire) before touching the entries they cover, as
// io_uring_setup(2) requires. The race detector does not see these mappings;
// it neither reports nor orders accesses to them.
//
// # Buffer lifetime
//
// Every address placed in an SQE (data buffers, iovecs, msghdr, timespec)
// must stay valid, and must not be moved or freed by the Go runtime, until
// the request's final CQE has been reaped: the kernel may use it at any time
// in between. (With IORING_FEAT_SUBMIT_STABLE, structures describing a
// request, such as a msghdr with its iovec array or a timeout's timespec, are
// copied by the time Submit returns; the data they point to is not.) Go memory
// handed to the kernel must not be on a goroutine stack, which moves: use heap
// objects kept reachable until the CQE (the Go heap does not move objects;
// runtime.Pinner makes that explicit), or memory from outside the Go heap.
// BufRing's ring is mmap'd; its buffers are a heap slab it keeps reachable
// (RegisterBufRing) or the caller's memory (RegisterBufRingMem). Closing a
// Ring does not shorten that obligation: the kernel cancels requests still
// in flight asynchronously after the ring file is released.
//
// # Errors
//
// Errors wrap the errno with the failing call, e.g. "io_uring_setup: operation
// not permitted", so errors.Is(err, unix.EPERM) works. io_uring is often
// disabled (sysctl kernel.io_uring_disabled, seccomp): Available reports why.
package uring
