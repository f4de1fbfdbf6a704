package readiness

import "golang.org/x/sys/unix"

// pollWaiter models poll(2). It keeps one pollfd per watched descriptor in
// an array that a change of interest updates in place (a descriptor no
// longer watched is swapped with the last entry); each wait hands the whole
// array to the kernel, which checks every entry and copies it back, and the
// loop walks the entries for the ready ones. Unlike select, any descriptor
// can be watched.
//
// Cost per wake-up: O(n) in the descriptors watched, in the kernel (copying
// and checking the array) and in the loop (walking it), whatever the number
// ready.
type pollWaiter struct {
	fds  []unix.PollFd
	slot []int // slot[fd]-1 is fd's index in fds; 0: not watched
}

func newPollWaiter() *pollWaiter { return &pollWaiter{} }

func (p *pollWaiter) watch(fd int, ev events) error {
	if fd >= len(p.slot) {
		p.slot = append(p.slot, make([]int, fd+1-len(p.slot))...)
	}
	var pe int16
	if ev&readable != 0 {
		pe |= unix.POLLIN
	}
	if ev&writable != 0 {
		pe |= unix.POLLOUT
	}
	i := p.slot[fd] - 1
	switch {
	case i >= 0 && pe != 0:
		p.fds[i].Events = pe
	case i >= 0: // stop watching fd: the last entry takes its place
		last := len(p.fds) - 1
		p.fds[i] = p.fds[last]
		p.slot[p.fds[i].Fd] = i + 1
		p.fds = p.fds[:last]
		p.slot[fd] = 0
	case pe != 0:
		p.fds = append(p.fds, unix.PollFd{Fd: int32(fd), Events: pe})
		p.slot[fd] = len(p.fds)
	}
	return nil
}

func (p *pollWaiter) wait(rd []ready, timeout int) ([]ready, error) {
	n, err := unix.Poll(p.fds, timeout)
	if err != nil {
		return rd, err
	}
	for i := 0; i < len(p.fds) && n > 0; i++ {
		re := p.fds[i].Revents
		if re == 0 {
			continue
		}
		n--
		var ev events
		if re&(unix.POLLIN|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			ev |= readable
		}
		if re&(unix.POLLOUT|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			ev |= writable
		}
		rd = append(rd, ready{int(p.fds[i].Fd), ev})
	}
	return rd, nil
}
