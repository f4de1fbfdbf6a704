package cport

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The epoll engine's receives: see backend_epoll_linux.go.

func (be *epollBackend) recv(c *Conn) error {
	be.kickRead(c.sys.(*epollConn))
	return nil
}

func (be *epollBackend) recvReleased(c *Conn, b *recvBuf) {
	if b != nil {
		be.p.recv.put(b)
	}
	be.kickRead(c.sys.(*epollConn))
}

// kickRead tells the read side that the receive's state changed: it runs
// readLoop if the socket may have something to read (or the connection is
// closed) and nobody else runs it, or makes the one running it look again.
func (be *epollBackend) kickRead(ec *epollConn) {
	ec.mu.Lock()
	switch {
	case ec.st&ecReading != 0:
		ec.st |= ecAgain
		ec.mu.Unlock()
		return
	case ec.st&(ecReadable|ecClosed) == 0:
		ec.mu.Unlock() // nothing to read yet: the next edge will find the receive ready
		return
	}
	ec.st |= ecReading
	ec.mu.Unlock()
	be.readLoop(ec)
}

// readLoop runs the read side of ec, which the caller took (ecReading), and
// lets go of it when nothing is left to do.
func (be *epollBackend) readLoop(ec *epollConn) {
	c := ec.c
	for reads := 0; ; {
		_, ready, _ := c.recvState()
		// Once the port is closing, its queue releases each completion as
		// it is pushed: reading on would be a loop that ends only when the
		// peer stops sending. The connection's close comes next and ends
		// the receive.
		closing := ready && reads > 0 && be.queueClosed()
		ec.mu.Lock()
		switch {
		case ready && ec.st&ecClosed != 0:
			ec.mu.Unlock()
			c.deliverRecv(nil, 0, ErrCanceled)
			continue
		case ready && ec.st&ecReadable != 0 && !closing:
			ec.st &^= ecAgain // the read and the look after it see what that flagged
			ec.mu.Unlock()
			be.readOnce(ec, c)
			reads++
			continue
		case ec.st&ecAgain != 0:
			ec.st &^= ecAgain
			ec.mu.Unlock()
			continue
		}
		ec.st &^= ecReading
		closeFD := ec.releasableLocked()
		ec.mu.Unlock()
		if closeFD {
			be.closeFD(ec)
		}
		return
	}
}

// queueClosed reports whether the port's queue is closed.
func (be *epollBackend) queueClosed() bool {
	q := &be.p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// readOnce reads once from ec into a pooled buffer and delivers the result.
func (be *epollBackend) readOnce(ec *epollConn, c *Conn) {
	b := be.p.recv.get()
	n, err := unix.Read(int(ec.fd), b.b)
	for err == unix.EINTR {
		n, err = unix.Read(int(ec.fd), b.b)
	}
	if n > 0 {
		if n < len(b.b) {
			// Drained (later data raises a new edge), unless the peer's
			// FIN or an error is still to be read.
			ec.mu.Lock()
			if ec.st&(ecAgain|ecHup) == 0 {
				ec.st &^= ecReadable
			}
			ec.mu.Unlock()
		}
		c.deliverRecv(b, n, nil)
		return
	}
	be.p.recv.put(b)
	switch {
	case err == unix.EAGAIN:
		ec.mu.Lock()
		if ec.st&ecAgain == 0 {
			ec.st &^= ecReadable
		}
		ec.mu.Unlock()
	case err == nil:
		// EOF, or a reset whose error a write in progress took (read(2)
		// then returns 0): once that write has reported its failure, the
		// Conn delivers it instead of EOF.
		ec.mu.Lock()
		if ec.st&ecWriting != 0 {
			ec.st = ec.st&^ecReadable | ecEOFWait
			ec.mu.Unlock()
			return
		}
		ec.mu.Unlock()
		c.deliverRecv(nil, 0, io.EOF)
	default:
		c.deliverRecv(nil, 0, os.NewSyscallError("read", err))
	}
}
