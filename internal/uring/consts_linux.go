package uring

// Constants from the kernel UAPI header include/uapi/linux/io_uring.h, which
// golang.org/x/sys/unix (v0.50.0) does not define: it only has the
// SYS_IO_URING_* syscall numbers. Names are kept as in the header so they can
// be looked up in the man pages.

// Opcodes (enum io_uring_op, sqe->opcode). Only those this package prepares or
// that a caller is likely to probe for are listed.
const (
	IORING_OP_NOP            = 0
	IORING_OP_READV          = 1
	IORING_OP_WRITEV         = 2
	IORING_OP_POLL_ADD       = 6
	IORING_OP_POLL_REMOVE    = 7
	IORING_OP_SENDMSG        = 9
	IORING_OP_RECVMSG        = 10
	IORING_OP_TIMEOUT        = 11
	IORING_OP_TIMEOUT_REMOVE = 12
	IORING_OP_ACCEPT         = 13
	IORING_OP_ASYNC_CANCEL   = 14
	IORING_OP_LINK_TIMEOUT   = 15
	IORING_OP_CONNECT        = 16
	IORING_OP_CLOSE          = 19
	IORING_OP_READ           = 22
	IORING_OP_WRITE          = 23
	IORING_OP_SEND           = 26
	IORING_OP_RECV           = 27
	IORING_OP_SHUTDOWN       = 34
	IORING_OP_MSG_RING       = 40
	IORING_OP_SOCKET         = 45
	IORING_OP_SEND_ZC        = 47
	IORING_OP_SENDMSG_ZC     = 48
	IORING_OP_READ_MULTISHOT = 49
	IORING_OP_BIND           = 56
	IORING_OP_LISTEN         = 57
)

// SQE flags (sqe->flags, IOSQE_*).
const (
	IOSQE_FIXED_FILE       = 1 << 0 // fd is an index into the registered file table
	IOSQE_IO_DRAIN         = 1 << 1 // issue after all earlier requests completed
	IOSQE_IO_LINK          = 1 << 2 // the next SQE starts only after this one succeeds
	IOSQE_IO_HARDLINK      = 1 << 3 // like IO_LINK, but the chain survives failure
	IOSQE_ASYNC            = 1 << 4 // always issue from the async worker pool
	IOSQE_BUFFER_SELECT    = 1 << 5 // pick a buffer from group sqe->buf_group
	IOSQE_CQE_SKIP_SUCCESS = 1 << 6 // post no CQE if the request succeeds
)

// io_uring_setup(2) flags (io_uring_params.flags, IORING_SETUP_*); see
// io_uring_setup_flags(7) for the kernel version of each.
const (
	IORING_SETUP_IOPOLL        = 1 << 0
	IORING_SETUP_SQPOLL        = 1 << 1
	IORING_SETUP_SQ_AFF        = 1 << 2
	IORING_SETUP_CQSIZE        = 1 << 3 // io_uring_params.cq_entries is valid (5.5)
	IORING_SETUP_CLAMP         = 1 << 4 // clamp oversized entry counts instead of failing (5.6)
	IORING_SETUP_ATTACH_WQ     = 1 << 5
	IORING_SETUP_R_DISABLED    = 1 << 6
	IORING_SETUP_SUBMIT_ALL    = 1 << 7 // keep submitting a batch past a failing SQE (5.18)
	IORING_SETUP_COOP_TASKRUN  = 1 << 8 // no IPI to run completion task work (5.19)
	IORING_SETUP_TASKRUN_FLAG  = 1 << 9 // set IORING_SQ_TASKRUN when task work is pending (5.19)
	IORING_SETUP_SQE128        = 1 << 10
	IORING_SETUP_CQE32         = 1 << 11
	IORING_SETUP_SINGLE_ISSUER = 1 << 12 // only the creating task submits (6.0; creator-bound since 6.1)
	IORING_SETUP_DEFER_TASKRUN = 1 << 13 // run task work only when the issuer waits (6.1)
	IORING_SETUP_NO_MMAP       = 1 << 14
	IORING_SETUP_NO_SQARRAY    = 1 << 16
)

// Features reported in io_uring_params.features (IORING_FEAT_*).
const (
	IORING_FEAT_SINGLE_MMAP     = 1 << 0 // SQ and CQ rings share one mapping
	IORING_FEAT_NODROP          = 1 << 1 // CQEs are kept on an overflow list, never dropped
	IORING_FEAT_SUBMIT_STABLE   = 1 << 2 // SQE-referenced data is consumed at submission
	IORING_FEAT_RW_CUR_POS      = 1 << 3
	IORING_FEAT_CUR_PERSONALITY = 1 << 4
	IORING_FEAT_FAST_POLL       = 1 << 5 // pollable files are retried on readiness, not in a worker
	IORING_FEAT_POLL_32BITS     = 1 << 6
	IORING_FEAT_SQPOLL_NONFIXED = 1 << 7
	IORING_FEAT_EXT_ARG         = 1 << 8 // io_uring_enter accepts IORING_ENTER_EXT_ARG (timeouts)
	IORING_FEAT_NATIVE_WORKERS  = 1 << 9
	IORING_FEAT_RSRC_TAGS       = 1 << 10
	IORING_FEAT_CQE_SKIP        = 1 << 11 // IOSQE_CQE_SKIP_SUCCESS is supported
	IORING_FEAT_LINKED_FILE     = 1 << 12
	IORING_FEAT_REG_REG_RING    = 1 << 13
	IORING_FEAT_RECVSEND_BUNDLE = 1 << 14
	IORING_FEAT_MIN_TIMEOUT     = 1 << 15
)

// io_uring_enter(2) flags (IORING_ENTER_*).
const (
	IORING_ENTER_GETEVENTS = 1 << 0
	IORING_ENTER_SQ_WAKEUP = 1 << 1
	IORING_ENTER_SQ_WAIT   = 1 << 2
	IORING_ENTER_EXT_ARG   = 1 << 3
)

// SQ ring flags written by the kernel (IORING_SQ_*).
const (
	IORING_SQ_NEED_WAKEUP = 1 << 0 // SQPOLL thread sleeps
	IORING_SQ_CQ_OVERFLOW = 1 << 1 // CQEs wait on the overflow list: enter with GETEVENTS
	IORING_SQ_TASKRUN     = 1 << 2 // task work pending: enter with GETEVENTS
)

// CQE flags (cqe->flags, IORING_CQE_F_*).
const (
	IORING_CQE_F_BUFFER        = 1 << 0 // the upper 16 bits hold a provided buffer id
	IORING_CQE_F_MORE          = 1 << 1 // the request stays armed and will post more CQEs
	IORING_CQE_F_SOCK_NONEMPTY = 1 << 2 // more data was left in the socket after this recv
	IORING_CQE_F_NOTIF         = 1 << 3 // zero-copy send notification
	IORING_CQE_F_BUF_MORE      = 1 << 4 // incrementally consumed buffer is not finished yet
	IORING_CQE_BUFFER_SHIFT    = 16     // cqe->flags >> IORING_CQE_BUFFER_SHIFT is the buffer id
)

// Send and receive modifiers stored in sqe->ioprio (IORING_RECVSEND_*,
// IORING_RECV_MULTISHOT), and accept modifiers (IORING_ACCEPT_*), also in
// sqe->ioprio.
const (
	IORING_RECVSEND_POLL_FIRST = 1 << 0
	IORING_RECV_MULTISHOT      = 1 << 1
	IORING_RECVSEND_FIXED_BUF  = 1 << 2
	IORING_RECVSEND_BUNDLE     = 1 << 4

	IORING_ACCEPT_MULTISHOT  = 1 << 0
	IORING_ACCEPT_DONTWAIT   = 1 << 1
	IORING_ACCEPT_POLL_FIRST = 1 << 2
)

// IORING_OP_ASYNC_CANCEL flags (sqe->cancel_flags).
const (
	IORING_ASYNC_CANCEL_ALL      = 1 << 0 // cancel every match, CQE res is the count
	IORING_ASYNC_CANCEL_FD       = 1 << 1 // match on sqe->fd instead of user_data
	IORING_ASYNC_CANCEL_ANY      = 1 << 2 // match any request
	IORING_ASYNC_CANCEL_FD_FIXED = 1 << 3
	IORING_ASYNC_CANCEL_USERDATA = 1 << 4
	IORING_ASYNC_CANCEL_OP       = 1 << 5
)

// IORING_OP_TIMEOUT and IORING_OP_LINK_TIMEOUT flags (sqe->timeout_flags).
const (
	IORING_TIMEOUT_ABS           = 1 << 0
	IORING_TIMEOUT_UPDATE        = 1 << 1
	IORING_TIMEOUT_BOOTTIME      = 1 << 2
	IORING_TIMEOUT_REALTIME      = 1 << 3
	IORING_LINK_TIMEOUT_UPDATE   = 1 << 4
	IORING_TIMEOUT_ETIME_SUCCESS = 1 << 5
	IORING_TIMEOUT_MULTISHOT     = 1 << 6
)

// IORING_OP_MSG_RING commands (sqe->addr, enum io_uring_msg_ring_flags) and
// flags (sqe->msg_ring_flags).
const (
	IORING_MSG_DATA    = 0 // post a CQE with res = sqe->len, user_data = sqe->off
	IORING_MSG_SEND_FD = 1 // pass a registered file to the target ring

	IORING_MSG_RING_CQE_SKIP   = 1 << 0 // post no CQE to the target (SEND_FD only)
	IORING_MSG_RING_FLAGS_PASS = 1 << 1 // copy sqe->file_index into the target cqe->flags
)

// io_uring_register(2) opcodes used here (enum io_uring_register_op).
const (
	IORING_REGISTER_PROBE       = 8
	IORING_REGISTER_PBUF_RING   = 22
	IORING_UNREGISTER_PBUF_RING = 23
)

// IO_URING_OP_SUPPORTED marks a supported opcode in io_uring_probe_op.flags.
const IO_URING_OP_SUPPORTED = 1 << 0

// mmap(2) offsets of the ring regions (IORING_OFF_*).
const (
	IORING_OFF_SQ_RING = 0
	IORING_OFF_CQ_RING = 0x8000000
	IORING_OFF_SQES    = 0x10000000
)

const (
	maxEntries    = 32768 // IORING_MAX_ENTRIES (io_uring/io_uring.c): SQ and buffer ring limit
	maxCQEntries  = 2 * maxEntries
	maxProbeOps   = 256 // io_uring_probe.ops_len is a __u8
	sigsetSize    = 8   // _NSIG/8, io_uring_getevents_arg.sigmask_sz
	defaultCQMult = 4   // CQ = 4 x SQ unless Options.CQEntries says otherwise
)
