//go:build unix

package load

import (
	"os"
	"runtime"
	"syscall"
)

// shortReadDrains tells that a read(2) of a TCP socket that returns less
// than it was asked for has emptied the socket's receive queue, so that
// more data will signal the poller again: the receiver then waits for it
// at once, without a read that would only return EAGAIN. On Linux, a TCP
// read returns short only once the receive queue and its backlog are empty,
// and each later arrival wakes the (edge-triggered) poller.
const shortReadDrains = runtime.GOOS == "linux"

// rawLoop receives from the socket of rc with read(2), straight into the
// inbox, until the connection ends; it reports whether it ran (false: rc
// could not be read, and nothing was) and why it stopped (a nil error for
// a clean end of stream).
func (c *client) rawLoop(rc syscall.RawConn) (bool, error) {
	var readErr error
	ran := false
	err := rc.Read(func(fd uintptr) bool {
		ran = true
		for {
			space := len(c.in.buf) - c.in.end
			n, err := syscall.Read(int(fd), c.in.buf[c.in.end:])
			switch {
			case err == syscall.EAGAIN:
				return false // wait until the socket is readable
			case err == syscall.EINTR:
				continue
			case err != nil:
				readErr = os.NewSyscallError("read", err)
				return true
			case n == 0: // end of stream
				return true
			}
			c.received(n)
			if shortReadDrains && n < space {
				return false
			}
		}
	})
	if !ran {
		return false, nil
	}
	if readErr != nil {
		return true, readErr
	}
	return true, err
}
