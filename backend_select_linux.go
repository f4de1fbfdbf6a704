//go:build linux

package cport

// The select engine: the poll engine's loop (backend_poll_linux.go) waiting
// in select(2) instead of poll(2), for the models experiment only. select's
// descriptor sets are bitmaps of FD_SETSIZE (1024) bits, so it cannot watch
// a descriptor numbered 1024 or more: Listen fails for such a listening
// socket, and an accepted connection past the cap is closed at once and
// reported as a failed accept (wrapping ErrUnsupported), accepting going on.

import (
	"golang.org/x/sys/unix"
)

// selectSetSize is FD_SETSIZE on Linux.
const selectSetSize = 1024

func init() {
	registerBackend(backendInfo{name: "select", rank: rankNever, open: openSelect})
}

func openSelect(p *Port) (backend, error) {
	var s selectSets
	return openPollEngine(p, "select", selectSetSize, s.wait)
}

// selectSets is the loop's scratch space for select(2).
type selectSets struct {
	r, w unix.FdSet
}

// wait turns fds into descriptor sets, calls select(2), and turns the sets
// back into Revents: the O(n) of the model, three times over.
func (s *selectSets) wait(fds []unix.PollFd, timeout int) error {
	s.r.Zero()
	s.w.Zero()
	n := 0
	for _, f := range fds {
		fd := int(f.Fd)
		if f.Events&unix.POLLIN != 0 {
			s.r.Set(fd)
		}
		if f.Events&unix.POLLOUT != 0 {
			s.w.Set(fd)
		}
		n = max(n, fd+1)
	}
	var tv *unix.Timeval
	if timeout >= 0 {
		t := unix.NsecToTimeval(int64(timeout) * 1e6)
		tv = &t
	}
	if _, err := unix.Select(n, &s.r, &s.w, nil, tv); err != nil {
		return err
	}
	for i := range fds {
		fd := int(fds[i].Fd)
		var re int16
		if s.r.IsSet(fd) {
			re |= unix.POLLIN
		}
		if s.w.IsSet(fd) {
			re |= unix.POLLOUT
		}
		fds[i].Revents = re
	}
	return nil
}
