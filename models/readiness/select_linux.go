package readiness

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdSetSize is FD_SETSIZE: select's sets are bitmaps of this many bits.
const fdSetSize = 1024

// selectWaiter models select(2). It keeps the watched descriptors in two
// master bitmaps of FD_SETSIZE bits (read, write) and the highest one
// watched; each wait copies the bitmaps (select overwrites what it is
// given), the kernel checks every descriptor from 0 to the highest, and the
// loop tests the bits of the same range for the ready ones.
//
// Cost per wake-up: O(highest descriptor watched), which for a server whose
// descriptors are dense is O(n) in the descriptors watched, paid in the
// kernel and again in the loop whatever the number ready. A descriptor
// numbered FD_SETSIZE (1024) or more cannot be watched at all.
type selectWaiter struct {
	r, w unix.FdSet // the master sets
	max  int        // the highest descriptor in either set, or -1
}

func newSelectWaiter() *selectWaiter { return &selectWaiter{max: -1} }

func (s *selectWaiter) watch(fd int, ev events) error {
	if fd >= fdSetSize {
		if ev == 0 {
			return nil
		}
		return fmt.Errorf("select: descriptor %d is past FD_SETSIZE (%d): the select model cannot watch it", fd, fdSetSize)
	}
	s.r.Clear(fd)
	s.w.Clear(fd)
	if ev&readable != 0 {
		s.r.Set(fd)
	}
	if ev&writable != 0 {
		s.w.Set(fd)
	}
	if ev != 0 {
		s.max = max(s.max, fd)
	}
	for s.max >= 0 && !s.r.IsSet(s.max) && !s.w.IsSet(s.max) {
		s.max--
	}
	return nil
}

func (s *selectWaiter) wait(rd []ready, timeout int) ([]ready, error) {
	r, w := s.r, s.w
	var tv *unix.Timeval
	if timeout >= 0 {
		t := unix.NsecToTimeval(int64(timeout) * 1e6)
		tv = &t
	}
	n, err := unix.Select(s.max+1, &r, &w, nil, tv)
	if err != nil {
		return rd, err
	}
	for fd := 0; fd <= s.max && n > 0; fd++ {
		var ev events
		if r.IsSet(fd) {
			ev |= readable
			n--
		}
		if w.IsSet(fd) {
			ev |= writable
			n--
		}
		if ev != 0 {
			rd = append(rd, ready{fd, ev})
		}
	}
	return rd, nil
}
