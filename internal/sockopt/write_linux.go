package sockopt

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// WriteAll writes all of b to the non-blocking descriptor fd: when fd's
// send buffer is full (EAGAIN) it waits for room with poll(2), and it
// retries a write or a poll that a signal interrupted (EINTR). Each time
// the buffer is full it first asks stop, if not nil, whether to give up:
// then it returns an error that matches net.ErrClosed and says how much of
// b was left unwritten. A wait lasts at most 100ms between two questions,
// so a stop is seen that soon even if no room comes.
//
// It is for the poll loops that read a descriptor themselves (the load
// generator's, the bench's echo driver) and must now and then write to it
// whole: a short frame, a window of messages.
func WriteAll(fd int, b []byte, stop func() bool) error {
	total := len(b)
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		switch {
		case err == unix.EAGAIN:
			if stop != nil && stop() {
				return fmt.Errorf("write: stopped with %d of %d bytes unwritten: %w", len(b), total, net.ErrClosed)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
				return os.NewSyscallError("poll", err)
			}
			continue
		case err == unix.EINTR:
			continue
		case err != nil:
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	return nil
}
