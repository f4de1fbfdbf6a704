package uring

import (
	"bytes"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAcceptMultishot(t *testing.T) { inModes(t, testAcceptMultishot) }

func testAcceptMultishot(t *testing.T, o Options) {
	r := setup(t, 4, &o)
	lfd, sa := listen(t)
	sqe := getSQE(t, r)
	sqe.PrepAcceptMultishot(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	sqe.UserData = 1
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	const conns = 5
	for range conns {
		dial(t, sa)
	}
	for i, c := range reap(t, r, conns) {
		if c.UserData != 1 || c.Res < 0 || !c.More() {
			t.Fatalf("accept %d: %+v (err %v)", i, c, c.Err())
		}
		fd := int(c.Res)
		closeFD(t, fd)
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("accepted fd %d: flags %#x, %v; want O_NONBLOCK", fd, fl, err)
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("accepted fd %d: fd flags %#x, %v; want FD_CLOEXEC", fd, fl, err)
		}
	}
	sqe = getSQE(t, r)
	sqe.PrepCancel(1, 0)
	sqe.UserData = 2
	m := byUserData(t, reap(t, r, 2))
	if m[1].Errno() != unix.ECANCELED || m[1].More() {
		t.Errorf("cancelled accept: %+v", m[1])
	}
	if m[2].Res != 0 {
		t.Errorf("cancel: %+v", m[2])
	}
}

// pattern is the test byte stream: position dependent, so that loss,
// duplication and reordering all show.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131 + i>>9)
	}
	return b
}

// TestRecvMultishotBufRing streams many messages of varied sizes into a
// multishot recv that has only four 64-byte provided buffers. The request
// keeps running out of buffers (-ENOBUFS, no F_MORE) and is re-armed; the
// bytes must still arrive complete and in order, up to end of stream.
func TestRecvMultishotBufRing(t *testing.T) { inModes(t, testRecvMultishotBufRing) }

func testRecvMultishotBufRing(t *testing.T, o Options) {
	r := setup(t, 8, &o)
	br, err := r.RegisterBufRing(4, 7, 64)
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t)

	want := pattern(128 << 10)
	var msgs [][]byte
	for rest, i := want, 0; len(rest) > 0; i++ {
		n := min(1+(i*37)%300, len(rest))
		msgs, rest = append(msgs, rest[:n]), rest[n:]
	}
	// Queue more than the four buffers hold before arming, so that the
	// first arming already runs dry.
	head := 0
	for sent := 0; sent < 2048; head++ {
		if err := writeAll(client, msgs[head]); err != nil {
			t.Fatal(err)
		}
		sent += len(msgs[head])
	}
	werr := make(chan error, 1)
	go func() {
		for _, m := range msgs[head:] {
			if err := writeAll(client, m); err != nil {
				werr <- err
				return
			}
		}
		werr <- unix.Shutdown(client, unix.SHUT_WR)
	}()

	got := make([]byte, 0, len(want))
	arms, noBufs, eof, armed := 0, 0, false, false
	for !eof {
		if !armed {
			sqe := getSQE(t, r)
			sqe.PrepRecvMultishot(server, br.Group(), 0)
			sqe.UserData = 5
			arms++
			armed = true
		}
		wait(t, r)
		r.ForEachCQE(func(c *CQE) bool {
			if c.UserData != 5 {
				t.Fatalf("unexpected completion %+v", *c)
			}
			if c.HasBuffer() {
				bid := c.BufferID()
				got = append(got, br.Buf(bid)[:max(c.Res, 0)]...)
				br.Recycle(bid)
			} else if c.Res > 0 {
				t.Fatalf("data without a buffer: %+v", *c)
			}
			switch {
			case c.Res == 0:
				eof = true
			case c.Errno() == unix.ENOBUFS:
				noBufs++
			case c.Res < 0:
				t.Fatalf("recv: %v", c.Err())
			}
			if !c.More() {
				armed = false
			}
			return true
		})
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes in %d messages, %d armings, %d ENOBUFS", len(got), len(msgs), arms, noBufs)
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("stream differs at byte %d (got %d bytes, want %d)", i, len(got), len(want))
	}
	if noBufs == 0 || arms < 2 {
		t.Errorf("buffers never ran out (%d ENOBUFS, %d armings): test did not exercise re-arming", noBufs, arms)
	}
	if armed {
		t.Error("multishot recv still armed after end of stream")
	}
}

func TestBufRingRegister(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	if _, err := r.RegisterBufRing(3, 1, 64); err == nil {
		t.Error("RegisterBufRing accepted 3 entries")
	}
	br, err := r.RegisterBufRing(8, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if br.Len() != 8 || br.BufSize() != 100 || br.Group() != 1 || len(br.Buf(7)) != 100 {
		t.Errorf("Len %d BufSize %d Group %d len(Buf(7)) %d", br.Len(), br.BufSize(), br.Group(), len(br.Buf(7)))
	}
	if _, err := r.RegisterBufRing(8, 1, 100); err == nil {
		t.Error("group 1 registered twice")
	} else {
		t.Logf("second registration of group 1: %v", err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The group id is free again; this one is left for Ring.Close.
	if _, err := r.RegisterBufRing(8, 1, 100); err != nil {
		t.Fatal(err)
	}
}

// TestSendMsg sends three iovecs with one sendmsg; the peer must read them
// as one contiguous stream. The msghdr, iovecs and data are Go memory pinned
// until the completion.
func TestSendMsg(t *testing.T) { inModes(t, testSendMsg) }

func testSendMsg(t *testing.T, o Options) {
	r := setup(t, 4, &o)
	client, server := tcpPair(t)

	parts := [][]byte{[]byte("completion "), []byte("ports "), pattern(5000)}
	var pin runtime.Pinner
	defer pin.Unpin()
	iov := make([]unix.Iovec, len(parts))
	pin.Pin(&iov[0])
	var want []byte
	for i, p := range parts {
		pin.Pin(&p[0])
		iov[i].Base = &p[0]
		iov[i].SetLen(len(p))
		want = append(want, p...)
	}
	msg := &unix.Msghdr{Iov: &iov[0]}
	msg.SetIovlen(len(iov))
	pin.Pin(msg)

	sqe := getSQE(t, r)
	sqe.PrepSendMsg(client, msg, unix.MSG_NOSIGNAL)
	sqe.UserData = 4
	if c := reap(t, r, 1)[0]; c.UserData != 4 || int(c.Res) != len(want) {
		t.Fatalf("sendmsg: %+v (err %v), want res %d", c, c.Err(), len(want))
	}
	got := make([]byte, len(want))
	if err := readFull(server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("peer read different bytes")
	}
}

func TestSend(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := setup(t, 4, nil)
	client, server := tcpPair(t)
	out := pinnedBytes(t, 1000)
	copy(out, pattern(1000))
	in := pinnedBytes(t, 1000)
	sqe := getSQE(t, r)
	sqe.PrepSend(client, out, 0)
	sqe.UserData = 1
	if c := reap(t, r, 1)[0]; c.Res != 1000 {
		t.Fatalf("send: %+v", c)
	}
	// A single-shot recv, first into a plain buffer, then into a provided one.
	sqe = getSQE(t, r)
	sqe.PrepRecv(server, in[:600], unix.MSG_WAITALL)
	sqe.UserData = 2
	if c := reap(t, r, 1)[0]; c.Res != 600 || !bytes.Equal(in[:600], out[:600]) {
		t.Fatalf("recv: %+v", c)
	}
	br, err := r.RegisterBufRing(2, 3, 512)
	if err != nil {
		t.Fatal(err)
	}
	sqe = getSQE(t, r)
	sqe.PrepRecvSelect(server, br.Group(), 0)
	sqe.UserData = 3
	c := reap(t, r, 1)[0]
	if c.Res != 400 || !c.HasBuffer() || c.More() || !bytes.Equal(br.Buf(c.BufferID())[:400], out[600:]) {
		t.Fatalf("recv with buffer select: %+v", c)
	}
	br.Recycle(c.BufferID())
}

// TestCancelRecv cancels pending receives by user_data and by descriptor.
func TestCancelRecv(t *testing.T) { inModes(t, testCancelRecv) }

func testCancelRecv(t *testing.T, o Options) {
	r := setup(t, 8, &o)
	_, server := tcpPair(t)
	buf := pinnedBytes(t, 64)

	sqe := getSQE(t, r)
	sqe.PrepRecv(server, buf, 0)
	sqe.UserData = 10
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	if n := r.CQReady(); n != 0 {
		t.Fatalf("recv on an idle socket completed: %d CQEs", n)
	}
	sqe = getSQE(t, r)
	sqe.PrepCancel(10, 0)
	sqe.UserData = 11
	m := byUserData(t, reap(t, r, 2))
	if m[10].Errno() != unix.ECANCELED {
		t.Errorf("recv: %+v, want -ECANCELED", m[10])
	}
	if m[11].Res != 0 {
		t.Errorf("cancel: %+v (err %v), want res 0", m[11], m[11].Err())
	}

	// Nothing left to cancel.
	sqe = getSQE(t, r)
	sqe.PrepCancel(10, 0)
	sqe.UserData = 12
	if c := reap(t, r, 1)[0]; c.Errno() != unix.ENOENT {
		t.Errorf("cancel of a finished request: %+v, want -ENOENT", c)
	}

	// Every request on the descriptor at once: a multishot and a single recv.
	br, err := r.RegisterBufRing(2, 9, 64)
	if err != nil {
		t.Fatal(err)
	}
	sqe = getSQE(t, r)
	sqe.PrepRecvMultishot(server, br.Group(), 0)
	sqe.UserData = 20
	sqe = getSQE(t, r)
	sqe.PrepRecv(server, buf, 0)
	sqe.UserData = 21
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	sqe = getSQE(t, r)
	sqe.PrepCancelFD(server, IORING_ASYNC_CANCEL_ALL)
	sqe.UserData = 22
	m = byUserData(t, reap(t, r, 3))
	if m[20].Errno() != unix.ECANCELED || m[20].More() || m[21].Errno() != unix.ECANCELED {
		t.Errorf("recvs: %+v %+v, want -ECANCELED", m[20], m[21])
	}
	if m[22].Res != 2 {
		t.Errorf("cancel by fd: %+v, want res 2", m[22])
	}
}
