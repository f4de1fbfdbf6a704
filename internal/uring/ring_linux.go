package uring

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options tunes Setup. The zero value is the recommended configuration.
type Options struct {
	// CQEntries sizes the completion queue. Zero means four times the
	// submission queue, so that multishot requests and bursts of completions
	// rarely spill onto the kernel's overflow list.
	CQEntries uint32

	// Shared asks for a ring that any thread may enter, one at a time under
	// the caller's own lock: IORING_SETUP_SINGLE_ISSUER, DEFER_TASKRUN and
	// COOP_TASKRUN are not requested. Use it for a ring that only posts
	// IORING_OP_MSG_RING wake-ups from arbitrary goroutines.
	Shared bool

	// Flags, when non-zero, are the exact IORING_SETUP_* flags to request
	// (IORING_SETUP_CQSIZE and IORING_SETUP_CLAMP are always added); Setup
	// then does not fall back and Shared is ignored. Only SUBMIT_ALL,
	// COOP_TASKRUN, TASKRUN_FLAG, SINGLE_ISSUER and DEFER_TASKRUN are
	// accepted: SQPOLL, IOPOLL, big SQEs/CQEs and the like change how the
	// ring must be driven, which this package does not do.
	Flags uint32
}

const allowedFlags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL |
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SINGLE_ISSUER |
	IORING_SETUP_DEFER_TASKRUN

// Setup tiers tried in order when Options.Flags is zero. Each falls back to
// the next on EINVAL, which is how older kernels reject unknown flags
// (io_uring_setup(2)). DEFER_TASKRUN requires SINGLE_ISSUER (6.1);
// TASKRUN_FLAG makes pending task work visible in the SQ flags so that
// PeekBatch callers know to enter (io_uring_setup_flags(7)).
var (
	ownerTiers = []uint32{
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_SUBMIT_ALL,
		0,
	}
	sharedTiers = []uint32{IORING_SETUP_SUBMIT_ALL, 0}
)

// Ring is one io_uring instance: a submission queue, a completion queue and
// the file descriptor that owns them.
//
// A Ring is not safe for concurrent use. Unless created with Options.Shared
// it may only be entered (Submit, SubmitAndWait*) and registered
// with (Probe, RegisterBufRing, BufRing.Close) from the OS thread that called
// Setup; see the package documentation. Close may be called from any thread.
type Ring struct {
	fd        int
	flags     uint32
	features  uint32
	sqEntries uint32
	cqEntries uint32

	ringMem []byte // SQ ring, and the CQ ring too with IORING_FEAT_SINGLE_MMAP
	cqMem   []byte // separate CQ ring mapping on kernels without SINGLE_MMAP
	sqeMem  []byte

	// Submission queue. sqTail counts SQEs handed out by GetSQE; the kernel
	// sees them once Submit stores it to *sqKTail.
	sqKHead  *uint32
	sqKTail  *uint32
	sqKFlags *uint32
	sqMask   uint32
	sqTail   uint32
	sqes     []SQE

	// Completion queue. cqHead is the local copy of *cqKHead, which only
	// this side writes.
	cqKHead     *uint32
	cqKTail     *uint32
	cqKOverflow *uint32
	cqMask      uint32
	cqHead      uint32
	cqes        []CQE

	// Arguments of a timed wait. They live in the Ring, a heap object that
	// the garbage collector never moves, because the kernel follows the
	// address of waitTS stored inside waitArg.
	waitArg getEventsArg
	waitTS  Timespec

	bufRings []*BufRing // registered and not yet closed
}

// Setup creates a ring with a submission queue of entries slots (rounded up
// to a power of two by the kernel) and maps its queues.
//
// Without Options.Flags it requests, in order of preference,
// SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG (6.1+), then
// COOP_TASKRUN|TASKRUN_FLAG (5.19+), then neither, each with SUBMIT_ALL,
// falling back when the kernel answers EINVAL; Flags reports what was taken.
// With the default flags the calling goroutine must be locked to its OS
// thread (runtime.LockOSThread), which becomes the only one allowed to enter
// the ring.
func Setup(entries uint32, opts *Options) (*Ring, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if entries == 0 || entries > maxEntries {
		return nil, fmt.Errorf("io_uring_setup: %d entries: %w", entries, unix.EINVAL)
	}
	cq := o.CQEntries
	if cq == 0 {
		cq = min(defaultCQMult*entries, maxCQEntries)
	}
	tiers := ownerTiers
	switch {
	case o.Flags&^allowedFlags != 0:
		return nil, fmt.Errorf("io_uring_setup: unsupported flags %#x: %w", o.Flags&^allowedFlags, unix.EINVAL)
	case o.Flags != 0:
		tiers = []uint32{o.Flags}
	case o.Shared:
		tiers = sharedTiers
	}
	var err error
	for _, f := range tiers {
		p := &params{flags: f | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP, cqEntries: cq}
		var fd int
		fd, err = sysSetup(entries, p)
		if err == nil {
			return newRing(fd, p)
		}
		if err != unix.EINVAL {
			break
		}
	}
	return nil, fmt.Errorf("io_uring_setup: %w", err)
}

// newRing maps the queues of a freshly created ring; it closes fd on failure.
func newRing(fd int, p *params) (*Ring, error) {
	r := &Ring{fd: fd, flags: p.flags, features: p.features, sqEntries: p.sqEntries, cqEntries: p.cqEntries}
	if err := r.mapQueues(p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mapQueues(p *params) (err error) {
	if p.features&IORING_FEAT_NODROP == 0 {
		// Without NODROP a full CQ silently loses completions (5.5+ has it).
		return fmt.Errorf("io_uring_setup: kernel lacks IORING_FEAT_NODROP: %w", unix.EOPNOTSUPP)
	}
	const sqeSize, cqeSize = unsafe.Sizeof(SQE{}), unsafe.Sizeof(CQE{})
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(cqeSize)
	single := p.features&IORING_FEAT_SINGLE_MMAP != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	if r.ringMem, err = unix.Mmap(r.fd, IORING_OFF_SQ_RING, sqSize, prot, flags); err != nil {
		return fmt.Errorf("mmap io_uring SQ ring: %w", err)
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, IORING_OFF_CQ_RING, cqSize, prot, flags); err != nil {
			return fmt.Errorf("mmap io_uring CQ ring: %w", err)
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, IORING_OFF_SQES, int(p.sqEntries)*int(sqeSize), prot, flags); err != nil {
		return fmt.Errorf("mmap io_uring SQEs: %w", err)
	}

	r.sqKHead = u32At(r.ringMem, p.sqOff.head)
	r.sqKTail = u32At(r.ringMem, p.sqOff.tail)
	r.sqKFlags = u32At(r.ringMem, p.sqOff.flags)
	r.sqMask = *u32At(r.ringMem, p.sqOff.ringMask)
	r.sqTail = *r.sqKTail
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	// The SQ index array adds an indirection this package does not use:
	// slot i always names SQE i, so fill it once (as liburing does).
	array := unsafe.Slice(u32At(r.ringMem, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}

	r.cqKHead = u32At(cqMem, p.cqOff.head)
	r.cqKTail = u32At(cqMem, p.cqOff.tail)
	r.cqKOverflow = u32At(cqMem, p.cqOff.overflow)
	r.cqMask = *u32At(cqMem, p.cqOff.ringMask)
	r.cqHead = *r.cqKHead
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), p.cqEntries)
	return nil
}

func u32At(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// Close unmaps the queues, closes the ring's file descriptor and releases
// the memory of the ring's BufRings that are still registered (closing the
// ring drops their groups). It may be called from any thread. It does not
// wait for requests still in flight; see the package documentation on buffer
// lifetime, and BufRing.Close for the rule on provided buffers. Calling
// Close again is a no-op. The Ring must not be used afterwards.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	var errs []error
	for _, m := range []*[]byte{&r.sqeMem, &r.cqMem, &r.ringMem} {
		if *m != nil {
			errs = append(errs, unix.Munmap(*m))
			*m = nil
		}
	}
	r.sqes, r.cqes = nil, nil
	r.sqKHead, r.sqKTail, r.sqKFlags, r.cqKHead, r.cqKTail, r.cqKOverflow = nil, nil, nil, nil, nil, nil
	if err := unix.Close(r.fd); err != nil {
		errs = append(errs, fmt.Errorf("close io_uring: %w", err))
	}
	r.fd = -1
	// Unregistering would need the issuer thread; the ring's teardown
	// drops the groups instead, and no request may be using the buffers.
	for len(r.bufRings) > 0 {
		errs = append(errs, r.bufRings[0].release())
	}
	return errors.Join(errs...)
}

// Fd returns the ring's file descriptor, the target of IORING_OP_MSG_RING.
func (r *Ring) Fd() int { return r.fd }

// Flags returns the IORING_SETUP_* flags the ring was created with.
func (r *Ring) Flags() uint32 { return r.flags }

// Features returns the IORING_FEAT_* flags the kernel reported.
func (r *Ring) Features() uint32 { return r.features }

// SQEntries returns the size of the submission queue.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries returns the size of the completion queue.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

var available = sync.OnceValue(func() error {
	fd, err := sysSetup(1, &params{})
	if err != nil {
		hint := ""
		switch err {
		case unix.EPERM:
			hint = " (disabled by sysctl kernel.io_uring_disabled, or by seccomp)"
		case unix.ENOSYS:
			hint = " (kernel without io_uring, or blocked by seccomp)"
		}
		return fmt.Errorf("io_uring unavailable%s: io_uring_setup: %w", hint, err)
	}
	unix.Close(fd)
	return nil
})

// Available reports whether io_uring can be used by this process, by creating
// and closing a one-entry ring once; later calls return the first answer. The
// error wraps the errno, typically unix.EPERM or unix.ENOSYS.
func Available() error { return available() }
