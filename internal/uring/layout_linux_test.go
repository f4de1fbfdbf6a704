package uring

import (
	"testing"
	"unsafe"
)

// TestLayout checks the Go mirrors of the kernel structures against the
// sizes and offsets of include/uapi/linux/io_uring.h.
func TestLayout(t *testing.T) {
	var sqe SQE
	var cqe CQE
	var be bufRingEntry
	var p params
	var pb probeBuf
	sizes := []struct {
		name      string
		got, want uintptr
	}{
		{"io_uring_sqe", unsafe.Sizeof(sqe), 64},
		{"io_uring_cqe", unsafe.Sizeof(cqe), 16},
		{"io_uring_buf", unsafe.Sizeof(be), 16},
		{"io_uring_buf_reg", unsafe.Sizeof(bufReg{}), 40},
		{"io_uring_params", unsafe.Sizeof(p), 120},
		{"io_sqring_offsets", unsafe.Sizeof(sqringOffsets{}), 40},
		{"io_cqring_offsets", unsafe.Sizeof(cqringOffsets{}), 40},
		{"io_uring_getevents_arg", unsafe.Sizeof(getEventsArg{}), 24},
		{"__kernel_timespec", unsafe.Sizeof(Timespec{}), 16},
		{"io_uring_probe_op", unsafe.Sizeof(probeOp{}), 8},
		{"io_uring_probe header", unsafe.Offsetof(pb.ops), 16},

		{"sqe.flags", unsafe.Offsetof(sqe.Flags), 1},
		{"sqe.ioprio", unsafe.Offsetof(sqe.Ioprio), 2},
		{"sqe.fd", unsafe.Offsetof(sqe.Fd), 4},
		{"sqe.off", unsafe.Offsetof(sqe.Off), 8},
		{"sqe.addr", unsafe.Offsetof(sqe.Addr), 16},
		{"sqe.len", unsafe.Offsetof(sqe.Len), 24},
		{"sqe.rw_flags", unsafe.Offsetof(sqe.OpFlags), 28},
		{"sqe.user_data", unsafe.Offsetof(sqe.UserData), 32},
		{"sqe.buf_index", unsafe.Offsetof(sqe.BufIndex), 40},
		{"sqe.personality", unsafe.Offsetof(sqe.Personality), 42},
		{"sqe.file_index", unsafe.Offsetof(sqe.FileIndex), 44},
		{"sqe.addr3", unsafe.Offsetof(sqe.Addr3), 48},
		{"cqe.res", unsafe.Offsetof(cqe.Res), 8},
		{"cqe.flags", unsafe.Offsetof(cqe.Flags), 12},
		{"io_uring_buf.bid", unsafe.Offsetof(be.bid), tailWordOff},
		{"io_uring_buf_ring.tail", unsafe.Offsetof(be.resv), tailWordOff + 2},
		{"params.sq_off", unsafe.Offsetof(p.sqOff), 40},
		{"params.cq_off", unsafe.Offsetof(p.cqOff), 80},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("%s: got %d, want %d", s.name, s.got, s.want)
		}
	}
}
