//go:build unix

package load

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"time"
)

// shortReadDrains tells that a read(2) of a TCP socket that returns less
// than it was asked for has emptied the socket's receive queue of data, so
// that more data will signal the poller again: while run.skipEmpty is set,
// the receiver then waits for it at once, without the read that would only
// return EAGAIN (one read(2) per wake-up instead of two). On Linux, a TCP
// read returns short only once the receive queue and its backlog are empty,
// and each later arrival wakes the (edge-triggered) poller. An end of
// stream or an error that was already queued, though, is left unread and
// not signalled again: run.stopSkipping deals with that.
const shortReadDrains = runtime.GOOS == "linux"

// rawLoop receives from the socket of rc with read(2), straight into the
// inbox, until the connection ends; it reports that it ran (true: sockets
// are read this way on Unix) and why it stopped (a nil error for a clean
// end of stream).
func (c *client) rawLoop(rc syscall.RawConn) (bool, error) {
	var readErr error
	read := func(fd uintptr) bool {
		for {
			space := len(c.in.buf) - c.in.end
			n, err := syscall.Read(int(fd), c.in.buf[c.in.end:])
			switch {
			case err == syscall.EAGAIN:
				if c.at >= c.from && c.at < c.to { // as of the last read
					c.windowEmpty++
				}
				return false // wait until the socket is readable
			case err == syscall.EINTR:
				continue
			case err != nil:
				readErr = os.NewSyscallError("read", err)
				return true
			case n == 0: // end of stream
				return true
			}
			if err := c.received(n); err != nil {
				readErr = err
				return true
			}
			if n < space && c.r.skipEmpty.Load() {
				return false
			}
		}
	}
	for {
		err := rc.Read(read)
		if readErr != nil {
			return true, readErr
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.r.closing.Load() { // woken by stopSkipping
			if err := c.conn.SetReadDeadline(time.Time{}); err != nil {
				return true, err
			}
			continue
		}
		return true, err
	}
}
