package uring

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SQE mirrors struct io_uring_sqe (64 bytes). Fields that are unions in the
// C header carry the name of their most common member; the comments list the
// others.
type SQE struct {
	Opcode      uint8  // IORING_OP_*
	Flags       uint8  // IOSQE_*
	Ioprio      uint16 // ioprio; IORING_RECV_MULTISHOT, IORING_ACCEPT_MULTISHOT, ...
	Fd          int32  // fd
	Off         uint64 // off, addr2
	Addr        uint64 // addr, splice_off_in
	Len         uint32 // len
	OpFlags     uint32 // rw_flags, msg_flags, accept_flags, cancel_flags, timeout_flags, msg_ring_flags, ...
	UserData    uint64 // user_data, returned in the CQE
	BufIndex    uint16 // buf_index, buf_group
	Personality uint16 // personality
	FileIndex   uint32 // splice_fd_in, file_index, optlen
	Addr3       uint64 // addr3, optval
	_           uint64 // __pad2
}

// GetSQE returns the next free submission queue entry, zeroed, or nil when
// the submission queue is full (call Submit and retry). The entry is handed
// to the kernel by the next Submit whatever its contents, so fill it before
// then: an untouched entry is a NOP with UserData 0.
func (r *Ring) GetSQE() *SQE {
	// Acquire: the kernel has finished reading the slots before head.
	head := atomic.LoadUint32(r.sqKHead)
	if r.sqTail-head >= r.sqEntries {
		return nil
	}
	sqe := &r.sqes[r.sqTail&r.sqMask]
	r.sqTail++
	*sqe = SQE{}
	return sqe
}

// SQReady returns how many entries GetSQE handed out that the kernel has not
// consumed yet.
func (r *Ring) SQReady() uint32 { return r.sqTail - atomic.LoadUint32(r.sqKHead) }

// The Prep methods fill an entry obtained from GetSQE (and so zeroed) for one
// operation; they leave UserData and the IOSQE_IO_LINK-style Flags to the
// caller. Every slice, pointer or structure they take is referenced by
// address: see the package documentation for how long it must stay valid.

func (s *SQE) prep(op uint8, fd int, addr uintptr, length uint32, off uint64) {
	s.Opcode = op
	s.Fd = int32(fd)
	s.Addr = uint64(addr)
	s.Len = length
	s.Off = off
}

func bufAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// PrepNop prepares IORING_OP_NOP, which completes with res 0.
func (s *SQE) PrepNop() { s.prep(IORING_OP_NOP, -1, 0, 0, 0) }

// PrepAccept prepares a single accept4(2) on the listening socket fd; flags
// are accept4 flags such as unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK. The CQE res
// is the new descriptor. The peer address is not collected (use
// getpeername).
func (s *SQE) PrepAccept(fd int, flags int) {
	s.prep(IORING_OP_ACCEPT, fd, 0, 0, 0)
	s.OpFlags = uint32(flags)
}

// PrepAcceptAddr prepares a single accept4(2) that also collects the peer's
// address: the kernel writes it to sa and its length to salen, which must
// hold sa's size on entry. Both must stay valid until the CQE.
func (s *SQE) PrepAcceptAddr(fd int, sa *unix.RawSockaddrAny, salen *uint32, flags int) {
	s.prep(IORING_OP_ACCEPT, fd, uintptr(unsafe.Pointer(sa)), 0, uint64(uintptr(unsafe.Pointer(salen))))
	s.OpFlags = uint32(flags)
}

// PrepAcceptMultishot prepares a multishot accept (5.19+): one CQE per
// accepted connection, each with IORING_CQE_F_MORE while the request stays
// armed (io_uring_prep_multishot_accept(3)).
func (s *SQE) PrepAcceptMultishot(fd int, flags int) {
	s.PrepAccept(fd, flags)
	s.Ioprio |= IORING_ACCEPT_MULTISHOT
}

// PrepConnect prepares a connect(2) of the socket fd to the address sa,
// salen bytes of it (io_uring_prep_connect(3)). The CQE res is 0 once
// connected, or the connect's error; a non-blocking socket's connect in
// progress is waited for by the kernel, not reported as -EINPROGRESS. sa
// must stay valid until the CQE.
func (s *SQE) PrepConnect(fd int, sa *unix.RawSockaddrAny, salen uint32) {
	s.prep(IORING_OP_CONNECT, fd, uintptr(unsafe.Pointer(sa)), 0, uint64(salen))
}

// PrepRecv prepares a recv(2) of at most len(buf) bytes into buf; flags are
// MSG_* flags.
func (s *SQE) PrepRecv(fd int, buf []byte, flags int) {
	s.prep(IORING_OP_RECV, fd, bufAddr(buf), uint32(len(buf)), 0)
	s.OpFlags = uint32(flags)
}

// PrepRecvSelect prepares a single recv(2) into a buffer the kernel picks
// from provided-buffer group (IOSQE_BUFFER_SELECT); the CQE names it
// (CQE.BufferID).
func (s *SQE) PrepRecvSelect(fd int, group uint16, flags int) {
	s.prep(IORING_OP_RECV, fd, 0, 0, 0)
	s.OpFlags = uint32(flags)
	s.Flags |= IOSQE_BUFFER_SELECT
	s.BufIndex = group
}

// PrepRecvMultishot prepares a multishot recv (6.0+): each arrival of data
// posts a CQE naming the buffer taken from group, with IORING_CQE_F_MORE
// while the request stays armed. It terminates, without F_MORE, on error, on
// end of stream (res 0) and with -ENOBUFS when the group runs out of buffers;
// the caller then returns buffers and re-arms (io_uring_prep_recv_multishot(3)).
// flags must not include MSG_WAITALL.
func (s *SQE) PrepRecvMultishot(fd int, group uint16, flags int) {
	s.PrepRecvSelect(fd, group, flags)
	s.Ioprio |= IORING_RECV_MULTISHOT
}

// PrepSend prepares a send(2) of buf; flags are MSG_* flags.
func (s *SQE) PrepSend(fd int, buf []byte, flags int) {
	s.prep(IORING_OP_SEND, fd, bufAddr(buf), uint32(len(buf)), 0)
	s.OpFlags = uint32(flags)
}

// PrepSendMsg prepares a sendmsg(2) of msg; flags are MSG_* flags. The
// kernel copies the msghdr and its iovec array at submission
// (IORING_FEAT_SUBMIT_STABLE), but reads the data they point to later: that
// must outlive the request.
func (s *SQE) PrepSendMsg(fd int, msg *unix.Msghdr, flags int) {
	s.prep(IORING_OP_SENDMSG, fd, uintptr(unsafe.Pointer(msg)), 1, 0)
	s.OpFlags = uint32(flags)
}

// PrepRecvMsg prepares a recvmsg(2) into msg; flags are MSG_* flags. The
// kernel copies the msghdr at submission, but writes the sender's address
// to msg.Name, and its length to msg, at completion: both must outlive the
// request. With IOSQE_BUFFER_SELECT the data goes to a provided buffer
// (msg's single iovec, if any, giving only its length); with
// IORING_RECV_MULTISHOT in Ioprio as well (6.0+), msg is a template of
// msg_namelen and msg_controllen, and each buffer starts with an
// io_uring_recvmsg_out header, the name and the control data before the
// payload (io_uring_prep_recvmsg_multishot(3)).
func (s *SQE) PrepRecvMsg(fd int, msg *unix.Msghdr, flags int) {
	s.prep(IORING_OP_RECVMSG, fd, uintptr(unsafe.Pointer(msg)), 1, 0)
	s.OpFlags = uint32(flags)
}

// PrepRead prepares a read(2)/pread(2) into buf at offset; pass ^uint64(0)
// to use the file position. Reading 8 bytes from an eventfd is how another
// goroutine can wake a ring owner blocked in SubmitAndWait: it writes to the
// eventfd with an ordinary write(2).
func (s *SQE) PrepRead(fd int, buf []byte, offset uint64) {
	s.prep(IORING_OP_READ, fd, bufAddr(buf), uint32(len(buf)), offset)
}

// PrepCancel prepares IORING_OP_ASYNC_CANCEL of the request(s) whose UserData
// is target; flags may add IORING_ASYNC_CANCEL_ALL. The cancelled request
// completes with -ECANCELED (or its own result if it was already finishing);
// the cancel's CQE res is 0 (with _ALL: the number cancelled), -ENOENT if
// nothing matched, or -EALREADY if the target was already running
// (io_uring_prep_cancel(3)).
func (s *SQE) PrepCancel(target uint64, flags uint32) {
	s.prep(IORING_OP_ASYNC_CANCEL, -1, 0, 0, 0)
	s.Addr = target
	s.OpFlags = flags
}

// PrepCancelFD prepares IORING_OP_ASYNC_CANCEL of the requests on file
// descriptor fd (IORING_ASYNC_CANCEL_FD is added; add IORING_ASYNC_CANCEL_ALL
// for all of them rather than the first).
func (s *SQE) PrepCancelFD(fd int, flags uint32) {
	s.prep(IORING_OP_ASYNC_CANCEL, fd, 0, 0, 0)
	s.OpFlags = flags | IORING_ASYNC_CANCEL_FD
}

// PrepClose prepares a close(2) of fd.
func (s *SQE) PrepClose(fd int) { s.prep(IORING_OP_CLOSE, fd, 0, 0, 0) }

// PrepMsgRing prepares IORING_OP_MSG_RING with IORING_MSG_DATA (5.18+): a CQE
// with the given res and userData is posted to the ring whose descriptor is
// ringFd, which may be this ring or another. Its own CQE reports the send
// (set IOSQE_CQE_SKIP_SUCCESS in Flags to skip it on success). flags are
// IORING_MSG_RING_* flags; with IORING_MSG_RING_FLAGS_PASS, FileIndex
// becomes the target CQE's flags (io_uring_prep_msg_ring(3)).
//
// From a ring other than the target this wakes a target owner blocked in
// SubmitAndWait, without the target's issuer thread doing anything; an
// eventfd read (PrepRead) is the alternative that needs no second ring.
func (s *SQE) PrepMsgRing(ringFd int, res int32, userData uint64, flags uint32) {
	s.prep(IORING_OP_MSG_RING, ringFd, IORING_MSG_DATA, uint32(res), userData)
	s.OpFlags = flags
}

// PrepTimeout prepares IORING_OP_TIMEOUT: it completes with -ETIME when ts
// (relative unless flags has IORING_TIMEOUT_ABS) elapses, or with res 0 once
// count other requests have completed (count 0: only the timer).
func (s *SQE) PrepTimeout(ts *Timespec, count uint32, flags uint32) {
	s.prep(IORING_OP_TIMEOUT, -1, uintptr(unsafe.Pointer(ts)), 1, uint64(count))
	s.OpFlags = flags
}

// PrepLinkTimeout prepares IORING_OP_LINK_TIMEOUT, which bounds the request
// in the previous SQE (that one must set IOSQE_IO_LINK): if ts elapses first
// the linked request is cancelled and this one completes with -ETIME.
func (s *SQE) PrepLinkTimeout(ts *Timespec, flags uint32) {
	s.prep(IORING_OP_LINK_TIMEOUT, -1, uintptr(unsafe.Pointer(ts)), 1, 0)
	s.OpFlags = flags
}
