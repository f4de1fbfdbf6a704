package uring

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// params mirrors struct io_uring_params (120 bytes).
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqringOffsets
	cqOff        cqringOffsets
}

// sqringOffsets mirrors struct io_sqring_offsets.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqringOffsets mirrors struct io_cqring_offsets.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// getEventsArg mirrors struct io_uring_getevents_arg, passed to
// io_uring_enter with IORING_ENTER_EXT_ARG.
type getEventsArg struct {
	sigmask     uint64
	sigmaskSz   uint32
	minWaitUsec uint32
	ts          uint64 // address of a Timespec
}

// Timespec mirrors struct __kernel_timespec, which is 64-bit on every
// architecture (unlike unix.Timespec on 32-bit ones).
type Timespec struct {
	Sec  int64
	Nsec int64
}

// The wrappers below convert their unsafe.Pointer argument to uintptr inside
// the unix.Syscall6 call expression, which (unsafe.Pointer rule 4) keeps the
// object alive and in place for the duration of the call; runtime.KeepAlive
// makes that explicit. Pointers nested inside such objects are not covered by
// the rule: the caller must keep what they point to alive itself.

func sysSetup(entries uint32, p *params) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	runtime.KeepAlive(p)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func sysEnter(fd int, toSubmit, minComplete, flags uint32, arg unsafe.Pointer, argSz uintptr) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete),
		uintptr(flags), uintptr(arg), argSz)
	runtime.KeepAlive(arg)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func sysRegister(fd int, op uint32, arg unsafe.Pointer, nrArgs uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(op), uintptr(arg),
		uintptr(nrArgs), 0, 0)
	runtime.KeepAlive(arg)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
