//go:build unix

package portable

import (
	"io"
	"os"
	"syscall"

	"cport.dev/cport/internal/engine"
)

// read reads what the connection has, in a buffer it returns (nil when n is
// 0): b, n > 0, nil; or nil, 0, and io.EOF or the error.
//
// A buffer is taken only once the socket has data: the read(2) is made
// from within the runtime poller's RawConn.Read, which waits for
// readability between attempts holding nothing, and the buffer of an
// attempt that would block (EAGAIN) goes straight back to the pool. With a
// blocking net.Conn.Read instead, every silent connection pinned a receive
// buffer (16 KiB by default) for as long as it was open: 19,000 connected
// clients held 335 MiB of heap, and the runtime kept the memory after they
// were gone.
func (c *conn) read() (*engine.Buf, int, error) {
	if c.rc == nil {
		return c.readHolding()
	}
	var (
		b     *engine.Buf
		n     int
		errno error
	)
	err := c.rc.Read(func(fd uintptr) bool {
		b = c.e.bufs.Get()
		for {
			if e := c.e.faults.Fail(engine.CallRecv); e != 0 {
				n, errno = -1, e // as if read(2) had failed so
			} else {
				n, errno = syscall.Read(int(fd), b.B)
			}
			if errno != syscall.EINTR {
				break
			}
		}
		if errno == syscall.EAGAIN {
			c.e.bufs.Put(b)
			b = nil
			return false // wait for readability, then try again
		}
		return true
	})
	switch {
	case err == nil && errno == nil && n > 0:
		return b, n, nil
	case b != nil:
		c.e.bufs.Put(b)
	}
	switch {
	case err != nil: // the socket was closed while waiting, or the poller failed
		return nil, 0, closedError(err)
	case errno != nil:
		return nil, 0, os.NewSyscallError("read", errno)
	default: // a read of zero bytes from a stream socket
		return nil, 0, io.EOF
	}
}
