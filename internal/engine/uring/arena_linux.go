package uring

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// sendArena holds the msghdrs and iovec arrays of the sendmsgs prepared
// since the kernel last consumed the whole submission queue. The kernel
// copies a sendmsg's msghdr and iovecs when it consumes its entry
// (IORING_FEAT_SUBMIT_STABLE, which setup requires), so they live only
// until the next enter that leaves the queue empty (reset), not until the
// send's CQE: a round of sends to thousands of connections needs the
// memory of one submission queue's worth of them, taken from blocks that
// are reused round after round, with no allocation per send.
//
// Each block is pinned (runtime.Pinner) from its allocation until it is
// dropped: the kernel gets its addresses through SQEs, memory the Go
// collector does not see. reset keeps as many blocks as recent rounds
// needed, the count decaying by a 32nd per reset, so that a burst's
// blocks go once the load falls. The iovecs point to the messages' bytes,
// which their owners keep until SendDone; reset clears them, so the arena
// holds no message after its round.
//
// A sendArena belongs to its ring's loop.
type sendArena struct {
	msgs []*msgBlock
	iovs []*iovBlock
	nm   int // msghdrs taken: block nm/arenaMsgs, index nm%arenaMsgs
	ib   int // the iovec block being taken from
	ni   int // iovecs taken from it
	// keepM and keepI are how many blocks of each reset keeps.
	keepM, keepI int
}

// arenaMsgs is the number of msghdrs in a block.
const arenaMsgs = 256

type msgBlock struct {
	m   [arenaMsgs]unix.Msghdr
	pin runtime.Pinner
}

// An iovBlock holds maxIov iovecs, the most one sendmsg carries.
type iovBlock struct {
	v   [maxIov]unix.Iovec
	pin runtime.Pinner
}

// msghdr returns a zeroed msghdr of the arena's.
func (a *sendArena) msghdr() *unix.Msghdr {
	b := a.nm / arenaMsgs
	if b == len(a.msgs) {
		blk := new(msgBlock)
		blk.pin.Pin(blk)
		a.msgs = append(a.msgs, blk)
	}
	m := &a.msgs[b].m[a.nm%arenaMsgs]
	a.nm++
	return m
}

// iovecs returns room for n iovecs, n at most maxIov: an empty slice of
// capacity n, which the caller appends to without growing it.
func (a *sendArena) iovecs(n int) []unix.Iovec {
	if len(a.iovs) > 0 && a.ni+n > maxIov {
		a.ib, a.ni = a.ib+1, 0
	}
	if a.ib == len(a.iovs) {
		blk := new(iovBlock)
		blk.pin.Pin(blk)
		a.iovs = append(a.iovs, blk)
	}
	v := a.iovs[a.ib].v[a.ni : a.ni : a.ni+n]
	a.ni += n
	return v
}

// reset takes back everything the arena gave out; the kernel must have
// consumed every entry that uses it.
func (a *sendArena) reset() {
	usedM := (a.nm + arenaMsgs - 1) / arenaMsgs
	for b := range usedM {
		k := min(a.nm-b*arenaMsgs, arenaMsgs)
		clear(a.msgs[b].m[:k])
	}
	usedI := 0
	if a.ni > 0 || a.ib > 0 {
		usedI = a.ib + 1
		for b := range a.ib {
			clear(a.iovs[b].v[:])
		}
		clear(a.iovs[a.ib].v[:a.ni])
	}
	a.nm, a.ib, a.ni = 0, 0, 0
	a.keepM = max(usedM, a.keepM*31/32)
	a.keepI = max(usedI, a.keepI*31/32)
	for len(a.msgs) > a.keepM {
		k := len(a.msgs) - 1
		a.msgs[k].pin.Unpin()
		a.msgs[k] = nil
		a.msgs = a.msgs[:k]
	}
	for len(a.iovs) > a.keepI {
		k := len(a.iovs) - 1
		a.iovs[k].pin.Unpin()
		a.iovs[k] = nil
		a.iovs = a.iovs[:k]
	}
}

// free drops every block: the loop ends, and the kernel holds nothing.
func (a *sendArena) free() {
	a.keepM, a.keepI = 0, 0
	a.nm, a.ib, a.ni = 0, 0, 0
	a.reset()
}
