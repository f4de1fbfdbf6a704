package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAvailable(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("io_uring not available: %v", err)
	}
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var maj, min int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min)
	return maj > major || maj == major && min >= minor
}

func TestSetupDefaults(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 8, nil)
	t.Logf("flags %#x features %#x sq %d cq %d", r.Flags(), r.Features(), r.SQEntries(), r.CQEntries())
	if r.SQEntries() != 8 || r.CQEntries() != 32 {
		t.Errorf("entries: sq %d cq %d, want 8 and 32", r.SQEntries(), r.CQEntries())
	}
	if r.Flags()&IORING_SETUP_CQSIZE == 0 {
		t.Errorf("flags %#x lack IORING_SETUP_CQSIZE", r.Flags())
	}
	if r.Features()&IORING_FEAT_NODROP == 0 {
		t.Errorf("features %#x lack IORING_FEAT_NODROP", r.Features())
	}
	want := uint32(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL)
	if kernelAtLeast(t, 6, 1) && r.Flags()&want != want {
		t.Errorf("flags %#x: want SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL on this kernel", r.Flags())
	}
	if r.Fd() < 0 {
		t.Errorf("Fd() = %d", r.Fd())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSetupOptions(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, &Options{CQEntries: 8})
	if r.SQEntries() != 4 || r.CQEntries() != 8 {
		t.Errorf("entries: sq %d cq %d, want 4 and 8", r.SQEntries(), r.CQEntries())
	}
	s := setup(t, 4, &Options{Shared: true})
	if s.Flags()&(IORING_SETUP_SINGLE_ISSUER|IORING_SETUP_DEFER_TASKRUN|IORING_SETUP_COOP_TASKRUN) != 0 {
		t.Errorf("shared ring flags %#x", s.Flags())
	}
	e := setup(t, 4, &Options{Flags: IORING_SETUP_SUBMIT_ALL})
	if e.Flags() != IORING_SETUP_SUBMIT_ALL|IORING_SETUP_CQSIZE|IORING_SETUP_CLAMP {
		t.Errorf("exact flags: got %#x", e.Flags())
	}
}

func TestSetupErrors(t *testing.T) {
	if _, err := Setup(0, nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Setup(0): %v, want EINVAL", err)
	}
	// DEFER_TASKRUN without SINGLE_ISSUER is invalid; explicit flags do not
	// fall back, so the kernel's EINVAL comes through, wrapped.
	_, err := Setup(4, &Options{Flags: IORING_SETUP_DEFER_TASKRUN})
	if !errors.Is(err, unix.EINVAL) || !strings.HasPrefix(err.Error(), "io_uring_setup: ") {
		t.Errorf("Setup(DEFER_TASKRUN alone): %v, want wrapped EINVAL", err)
	}
}

func TestProbe(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	p, err := r.Probe()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("last opcode %d", p.LastOp())
	for _, op := range []uint8{IORING_OP_NOP, IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SEND,
		IORING_OP_SENDMSG, IORING_OP_ASYNC_CANCEL, IORING_OP_CLOSE, IORING_OP_MSG_RING, IORING_OP_READ,
		IORING_OP_TIMEOUT, IORING_OP_LINK_TIMEOUT} {
		if !p.Supports(op) {
			t.Errorf("opcode %d not supported", op)
		}
	}
	if p.Supports(255) {
		t.Error("opcode 255 reported as supported")
	}
}

func TestNop(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	for i := range 4 {
		sqe := getSQE(t, r)
		sqe.PrepNop()
		sqe.UserData = 0xfeed0000 + uint64(i)
	}
	if r.GetSQE() != nil {
		t.Fatal("GetSQE returned an entry from a full submission queue")
	}
	if got := r.SQReady(); got != 4 {
		t.Errorf("SQReady = %d, want 4", got)
	}
	n, err := r.SubmitAndWait(4)
	if err != nil || n != 4 {
		t.Fatalf("SubmitAndWait(4) = %d, %v", n, err)
	}
	if r.SQReady() != 0 || r.CQReady() != 4 {
		t.Fatalf("after submit: SQReady %d CQReady %d", r.SQReady(), r.CQReady())
	}
	i := 0
	r.ForEachCQE(func(c *CQE) bool {
		if c.UserData != 0xfeed0000+uint64(i) || c.Res != 0 || c.Err() != nil {
			t.Errorf("cqe %d: %+v", i, *c)
		}
		i++
		return true
	})
	if i != 4 || r.CQReady() != 0 {
		t.Errorf("ForEachCQE saw %d, %d left", i, r.CQReady())
	}
	// Nothing to submit and nothing to flush: no system call, no error.
	if n, err := r.Submit(); n != 0 || err != nil {
		t.Errorf("empty Submit = %d, %v", n, err)
	}
}

// TestOverflow overruns a completion queue of 8 entries with thousands of
// NOP completions, never reaping while submitting: the kernel parks the
// excess on its overflow list (IORING_FEAT_NODROP) and the ring flushes it
// back as the queue is drained. Every completion must arrive exactly once,
// in submission order.
func TestOverflow(t *testing.T) { inModes(t, testOverflow) }

func testOverflow(t *testing.T, o Options) {
	o.CQEntries = 8
	r := setup(t, 4, &o)
	const total = 4000
	sawOverflow := false
	for i := 0; i < total; {
		for ; i < total; i++ {
			sqe := r.GetSQE()
			if sqe == nil {
				break
			}
			sqe.PrepNop()
			sqe.UserData = uint64(i)
		}
		if _, err := r.Submit(); err != nil {
			t.Fatalf("Submit after %d: %v", i, err)
		}
		sawOverflow = sawOverflow || atomic.LoadUint32(r.sqKFlags)&IORING_SQ_CQ_OVERFLOW != 0
	}
	if !sawOverflow {
		t.Error("IORING_SQ_CQ_OVERFLOW never set: the test did not overflow the CQ")
	}
	next := uint64(0)
	buf := make([]CQE, 5) // smaller than the CQ on purpose
	for next < total {
		if r.CQReady() == 0 {
			wait(t, r)
		}
		n := r.PeekBatch(buf)
		for _, c := range buf[:n] {
			if c.UserData != next || c.Res != 0 {
				t.Fatalf("completion %d: got %+v", next, c)
			}
			next++
		}
		r.Advance(uint32(n))
	}
	if _, err := r.SubmitAndWaitTimeout(1, time.Millisecond); !errors.Is(err, unix.ETIME) {
		t.Errorf("extra completions after %d: err %v, CQReady %d", total, err, r.CQReady())
	}
	if d := atomic.LoadUint32(r.cqKOverflow); d != 0 {
		t.Errorf("kernel dropped %d completions", d)
	}
}

func TestWaitTimeout(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	n, err := r.SubmitAndWaitTimeout(1, 5*time.Millisecond)
	if !errors.Is(err, unix.ETIME) || n != 0 {
		t.Fatalf("SubmitAndWaitTimeout on an idle ring = %d, %v; want ETIME", n, err)
	}
	// A submission in the same call is still counted when the wait times out.
	ts := &Timespec{Sec: 3600}
	var pin runtime.Pinner
	pin.Pin(ts)
	defer pin.Unpin()
	sqe := getSQE(t, r)
	sqe.PrepTimeout(ts, 0, 0)
	sqe.UserData = 1
	n, err = r.SubmitAndWaitTimeout(1, 5*time.Millisecond)
	if !errors.Is(err, unix.ETIME) || n != 1 {
		t.Fatalf("SubmitAndWaitTimeout with a long timer = %d, %v; want 1, ETIME", n, err)
	}
	sqe = getSQE(t, r)
	sqe.PrepCancel(1, 0)
	sqe.UserData = 2
	m := byUserData(t, reap(t, r, 2))
	if m[1].Errno() != unix.ECANCELED || m[2].Res != 0 {
		t.Errorf("cancelled timer: %+v, cancel: %+v", m[1], m[2])
	}
}

func TestTimeoutOps(t *testing.T) { inModes(t, testTimeoutOps) }

func testTimeoutOps(t *testing.T, o Options) {
	r := setup(t, 4, &o)
	_, server := tcpPair(t)
	ts := &Timespec{Nsec: int64(time.Millisecond)}
	var pin runtime.Pinner
	pin.Pin(ts)
	defer pin.Unpin()
	buf := pinnedBytes(t, 16)

	sqe := getSQE(t, r)
	sqe.PrepTimeout(ts, 0, 0)
	sqe.UserData = 1
	// A recv that never gets data, bounded by a linked timeout.
	sqe = getSQE(t, r)
	sqe.PrepRecv(server, buf, 0)
	sqe.Flags |= IOSQE_IO_LINK
	sqe.UserData = 2
	sqe = getSQE(t, r)
	sqe.PrepLinkTimeout(ts, 0)
	sqe.UserData = 3
	m := byUserData(t, reap(t, r, 3))
	if m[1].Errno() != unix.ETIME {
		t.Errorf("timeout: %+v, want -ETIME", m[1])
	}
	if m[2].Errno() != unix.ECANCELED {
		t.Errorf("linked recv: %+v, want -ECANCELED", m[2])
	}
	if m[3].Errno() != unix.ETIME {
		t.Errorf("link timeout: %+v, want -ETIME", m[3])
	}
}

func TestClose(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	sqe := getSQE(t, r)
	sqe.PrepClose(efd)
	sqe.UserData = 9
	c := reap(t, r, 1)[0]
	if c.UserData != 9 || c.Res != 0 {
		t.Fatalf("close: %+v", c)
	}
	if _, err := unix.FcntlInt(uintptr(efd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("fd still open after IORING_OP_CLOSE: %v", err)
	}
}

// TestEventfdWake blocks the owner in SubmitAndWait on an eventfd read and
// wakes it from another goroutine with a plain write(2).
func TestEventfdWake(t *testing.T) { inModes(t, testEventfdWake) }

func testEventfdWake(t *testing.T, o Options) {
	r := setup(t, 4, &o)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	closeFD(t, efd)
	buf := pinnedBytes(t, 8)
	sqe := getSQE(t, r)
	sqe.PrepRead(efd, buf, 0)
	sqe.UserData = 42

	done := make(chan error, 1)
	go func() {
		time.Sleep(10 * time.Millisecond) // let the owner block first, usually
		var v [8]byte
		binary.NativeEndian.PutUint64(v[:], 5)
		done <- writeAll(efd, v[:])
	}()
	c := reap(t, r, 1)[0]
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.UserData != 42 || c.Res != 8 || binary.NativeEndian.Uint64(buf) != 5 {
		t.Fatalf("eventfd read: %+v, value %d", c, binary.NativeEndian.Uint64(buf))
	}
}

// TestMsgRingWake blocks the owner in SubmitAndWait and wakes it from another
// goroutine by posting a CQE into its ring with IORING_OP_MSG_RING, sent from
// a second, shared ring that any thread may enter.
func TestMsgRingWake(t *testing.T) { inModes(t, testMsgRingWake) }

func testMsgRingWake(t *testing.T, o Options) {
	r := setup(t, 4, &o)
	waker := setup(t, 4, &Options{Shared: true})

	done := make(chan error, 1)
	go func() { // on another OS thread: ours is locked
		time.Sleep(10 * time.Millisecond) // let the owner block first, usually
		sqe := waker.GetSQE()
		sqe.PrepMsgRing(r.Fd(), 77, 0xabcdef, 0)
		sqe.Flags |= IOSQE_CQE_SKIP_SUCCESS
		sqe.UserData = 1
		_, err := waker.Submit()
		done <- err
	}()
	c := reap(t, r, 1)[0]
	if err := <-done; err != nil {
		t.Fatalf("waker Submit: %v", err)
	}
	if c.UserData != 0xabcdef || c.Res != 77 {
		t.Fatalf("message: %+v", c)
	}
	if n := waker.CQReady(); n != 0 {
		t.Errorf("waker ring has %d completions despite IOSQE_CQE_SKIP_SUCCESS", n)
	}
}

// TestSingleIssuer checks the documented rule: a SINGLE_ISSUER ring refuses
// submissions from any thread but its creator's, with EEXIST.
func TestSingleIssuer(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	if r.Flags()&IORING_SETUP_SINGLE_ISSUER == 0 {
		t.Skip("ring is not SINGLE_ISSUER on this kernel")
	}
	sqe := getSQE(t, r)
	sqe.PrepNop()
	sqe.UserData = 3
	errc := make(chan error)
	go func() { // on another OS thread: ours is locked
		_, err := r.Submit()
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, unix.EEXIST) {
		t.Fatalf("Submit from another thread: %v, want EEXIST", err)
	}
	// The entry is still queued; the owner submits it.
	if c := reap(t, r, 1)[0]; c.UserData != 3 || c.Res != 0 {
		t.Fatalf("nop: %+v", c)
	}

	// io_uring_register is bound to the issuer thread as well. A buffer ring
	// whose unregistration failed stays mapped until Ring.Close, which
	// releases it from any thread.
	br, err := r.RegisterBufRing(2, 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := r.Probe()
		errc <- err
		errc <- br.Close()
		errc <- r.Close()
	}()
	for _, what := range []string{"Probe", "BufRing.Close"} {
		if err := <-errc; !errors.Is(err, unix.EEXIST) {
			t.Errorf("%s from another thread: %v, want EEXIST", what, err)
		}
	}
	if err := <-errc; err != nil {
		t.Errorf("Ring.Close from another thread: %v", err)
	}
	if br.ring != nil || br.mem != nil {
		t.Error("Ring.Close left the buffer ring mapped")
	}
}

// TestSetupFallback makes the first tier fail the way an old kernel rejects
// an unknown flag (EINVAL) and checks that Setup takes the next one.
func TestSetupFallback(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	saved := ownerTiers
	defer func() { ownerTiers = saved }()
	ownerTiers = []uint32{IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG}
	r := setup(t, 4, nil)
	if want := uint32(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP); r.Flags() != want {
		t.Fatalf("flags %#x, want %#x", r.Flags(), want)
	}
	sqe := getSQE(t, r)
	sqe.PrepNop()
	sqe.UserData = 1
	if c := reap(t, r, 1)[0]; c.UserData != 1 {
		t.Fatalf("nop: %+v", c)
	}
	if _, err := Setup(4, &Options{Flags: IORING_SETUP_SQPOLL}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Setup(SQPOLL): %v, want EINVAL", err)
	}
}
