package uring

// Benchmarks of io_uring features the uring engine does not use, measured
// where cport's figures are taken, on loopback TCP: zero-copy sends
// (IORING_OP_SEND_ZC) against copying ones, and registered files
// (IOSQE_FIXED_FILE) against plain descriptors. The figures and what they
// decided are in docs/bench/REQUEST-RESPONSE.md. cpu-ns/op is the whole
// process's CPU time (getrusage), the readers' included: the same readers
// for both sides of a comparison.

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioringRegisterFiles is IORING_REGISTER_FILES, used here only.
const ioringRegisterFiles = 2

// cpuTime returns the process's user and system time so far, in
// nanoseconds.
func cpuTime(tb testing.TB) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// noDelay sets TCP_NODELAY on fd, as on every socket of cport's.
func noDelay(tb testing.TB, fd int) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		tb.Fatal(err)
	}
}

// drain reads everything that arrives on fd (a dup of it, through Go's
// runtime poller, so that a reader is a goroutine, not a thread) until the
// peer closes. The test's cleanup waits for it.
func drain(tb testing.TB, fd int) {
	dup, err := unix.Dup(fd)
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		tb.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "drain")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
		}
	}()
	tb.Cleanup(func() {
		f.Close() // ends a read the peer's close has not
		wg.Wait()
	})
}

// sendCQEs waits for the completions of n sends and fails on an error or
// a short send.
func sendCQEs(b *testing.B, r *Ring, n int, size int32) {
	var cqes [64]CQE
	for n > 0 {
		if _, err := r.SubmitAndWait(1); err != nil && err != unix.EINTR {
			b.Fatal(err)
		}
		k := r.PeekBatch(cqes[:])
		for _, c := range cqes[:k] {
			checkSend(b, c, size)
		}
		r.Advance(uint32(k))
		n -= k
	}
}

func checkSend(b *testing.B, c CQE, size int32) {
	switch {
	case c.Flags&IORING_CQE_F_NOTIF != 0:
	case c.Res < 0:
		b.Fatalf("send: %v", c.Err())
	case c.Res != size:
		b.Fatalf("send: %d bytes of %d", c.Res, size)
	}
}

// BenchmarkSendZeroCopy sends messages of each size over one loopback
// connection, one at a time, with a copying send and with a zero-copy one.
func BenchmarkSendZeroCopy(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 64 << 10} {
		for _, zc := range []bool{false, true} {
			name := "copy"
			if zc {
				name = "zerocopy"
			}
			b.Run(fmt.Sprintf("%s/%dKiB", name, size>>10), func(b *testing.B) {
				benchSend(b, size, zc)
			})
		}
	}
}

// sendWindow is how many sends benchSend keeps in flight, each with a
// buffer of its own: a zero-copy send's buffer is the kernel's until its
// notification, which comes once the receiver has taken the data.
const sendWindow = 16

func benchSend(b *testing.B, size int, zc bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(b, 2*sendWindow, nil)
	client, server := tcpPair(b)
	noDelay(b, client) // as the engine's sockets: a short zero-copy send waits for no ACK
	drain(b, server)
	var free []uint64 // buffers not in the kernel, by index
	bufs := make([][]byte, sendWindow)
	for i := range bufs {
		bufs[i] = pinnedBytes(b, size)
		free = append(free, uint64(i))
	}
	var cqes [2 * sendWindow]CQE
	// reap takes the completions there are, waiting for one if wait:
	// a buffer is free again at its send's CQE or, for a zero-copy send
	// that goes on (F_MORE), at its notification.
	reap := func(wait bool) {
		if wait {
			if _, err := r.SubmitAndWait(1); err != nil && err != unix.EINTR {
				b.Fatal(err)
			}
		}
		k := r.PeekBatch(cqes[:])
		for _, c := range cqes[:k] {
			checkSend(b, c, int32(size))
			if !c.More() {
				free = append(free, c.UserData)
			}
		}
		r.Advance(uint32(k))
	}
	b.SetBytes(int64(size))
	c0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		for len(free) == 0 {
			reap(true)
		}
		i := free[len(free)-1]
		free = free[:len(free)-1]
		s := r.GetSQE()
		if zc {
			s.prep(IORING_OP_SEND_ZC, client, bufAddr(bufs[i]), uint32(size), 0)
			s.OpFlags = unix.MSG_WAITALL
		} else {
			s.PrepSend(client, bufs[i], unix.MSG_WAITALL)
		}
		s.UserData = i
		if _, err := r.Submit(); err != nil {
			b.Fatal(err)
		}
		reap(false)
	}
	for len(free) < sendWindow {
		reap(true)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-c0)/float64(b.N), "cpu-ns/op")
	unix.Shutdown(client, unix.SHUT_WR) // the reader ends
}

// BenchmarkSendFixedFile sends a 64-byte message to each of 64 loopback
// connections per op, in one submission, naming their sockets by
// descriptor or by index into the ring's registered files. The receivers
// are read between timed stretches, not during them, so that their
// wake-ups do not drown the cost of looking a descriptor up.
func BenchmarkSendFixedFile(b *testing.B) {
	for _, fixed := range []bool{false, true} {
		name := "plain"
		if fixed {
			name = "fixed"
		}
		b.Run(name, func(b *testing.B) { benchSendFiles(b, fixed) })
	}
}

func benchSendFiles(b *testing.B, fixed bool) {
	const (
		conns   = 64
		stretch = 64 // ops between reads of the receivers: 4 KiB each
	)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(b, 2*conns, nil)
	fds := make([]int32, conns)
	servers := make([]int, conns)
	for i := range fds {
		client, server := tcpPair(b)
		noDelay(b, client)
		if err := unix.SetNonblock(server, true); err != nil {
			b.Fatal(err)
		}
		fds[i], servers[i] = int32(client), server
	}
	if fixed {
		if _, err := sysRegister(r.Fd(), ioringRegisterFiles, unsafe.Pointer(&fds[0]), conns); err != nil {
			b.Fatalf("IORING_REGISTER_FILES: %v", err)
		}
	}
	msg := pinnedBytes(b, 64)
	buf := make([]byte, 64<<10)
	var cpu int64
	b.ResetTimer()
	for done := 0; done < b.N; {
		c0 := cpuTime(b)
		for k := min(stretch, b.N-done); k > 0; k-- {
			for i, fd := range fds {
				s := r.GetSQE()
				if fixed {
					s.PrepSend(i, msg, 0)
					s.Flags |= IOSQE_FIXED_FILE
				} else {
					s.PrepSend(int(fd), msg, 0)
				}
				s.UserData = 1
			}
			sendCQEs(b, r, conns, 64)
			done++
		}
		cpu += cpuTime(b) - c0
		b.StopTimer()
		for _, fd := range servers {
			for {
				if _, err := unix.Read(fd, buf); err != nil {
					break
				}
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu)/float64(b.N*conns), "cpu-ns/send")
}
