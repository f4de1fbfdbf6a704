package uring

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSendArena: what the arena gives out never overlaps, fits in its
// blocks without growing, is cleared when taken back, and a burst's blocks
// go after rounds that need fewer.
func TestSendArena(t *testing.T) {
	var a sendArena
	b := []byte("x")
	type span struct{ lo, hi uintptr }
	var spans []span
	take := func(n int) {
		v := a.iovecs(n)
		if len(v) != 0 || cap(v) != n {
			t.Fatalf("iovecs(%d): len %d cap %d; want 0 and %d", n, len(v), cap(v), n)
		}
		v = v[:n]
		for i := range v {
			v[i].Base = &b[0]
		}
		lo := uintptr(unsafe.Pointer(&v[0]))
		hi := lo + uintptr(n)*unsafe.Sizeof(unix.Iovec{})
		for _, s := range spans {
			if lo < s.hi && s.lo < hi {
				t.Fatalf("iovecs(%d) at %#x-%#x overlaps %#x-%#x", n, lo, hi, s.lo, s.hi)
			}
		}
		spans = append(spans, span{lo, hi})
		m := a.msghdr()
		if m.Iov != nil {
			t.Fatalf("msghdr %d not zeroed", a.nm)
		}
		m.Iov = &v[0]
	}
	// A round: 600 msghdrs (3 blocks), iovecs of 1,000 then 30 each, so
	// that the second does not fit in the first block.
	take(1000)
	for range 599 {
		take(30)
	}
	if len(a.msgs) != 3 || len(a.iovs) < 18 {
		t.Fatalf("%d msghdr blocks, %d iovec blocks; want 3 and at least 18", len(a.msgs), len(a.iovs))
	}
	blocks := len(a.iovs)
	a.reset()
	for i, blk := range a.msgs {
		for j := range blk.m {
			if blk.m[j].Iov != nil {
				t.Fatalf("msghdr block %d entry %d not cleared", i, j)
			}
		}
	}
	for i, blk := range a.iovs {
		for j := range blk.v {
			if blk.v[j].Base != nil {
				t.Fatalf("iovec block %d entry %d not cleared: it keeps a message's bytes", i, j)
			}
		}
	}
	if len(a.msgs) != 3 || len(a.iovs) != blocks {
		t.Fatalf("after the round: %d and %d blocks; want the round's, 3 and %d", len(a.msgs), len(a.iovs), blocks)
	}
	// Quiet rounds: the blocks go, an eighth at a time.
	spans = nil
	for r := 0; len(a.iovs) > 1; r++ {
		if r == 100 {
			t.Fatalf("%d iovec blocks kept after 100 rounds of one small send", len(a.iovs))
		}
		take(2)
		a.reset()
		spans = nil
	}
	if len(a.msgs) != 1 {
		t.Fatalf("%d msghdr blocks kept; want 1", len(a.msgs))
	}
	a.free()
	if len(a.msgs) != 0 || len(a.iovs) != 0 {
		t.Fatalf("free kept %d and %d blocks", len(a.msgs), len(a.iovs))
	}
}
