package epoll

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
)

// The epoll engine's receives: see doc.go.

// kickRead tells the read side that the receive's state changed: it runs
// readLoop if the socket may have something to read (or the connection is
// closed) and nobody else runs it, or makes the one running it look again.
func (e *Engine) kickRead(ec *conn) {
	ec.mu.Lock()
	switch {
	case ec.st&ecReading != 0:
		ec.st |= ecAgain
		ec.mu.Unlock()
		return
	case ec.st&(ecReadable|ecClosed) == 0 && ec.shutErr == 0:
		ec.mu.Unlock() // nothing to read yet: the next edge will find the receive ready
		return
	}
	ec.st |= ecReading
	ec.mu.Unlock()
	e.readLoop(ec)
}

// readLoop runs the read side of ec, which the caller took (ecReading), and
// lets go of it when nothing is left to do. It calls the owner with no lock
// of the engine's held.
func (e *Engine) readLoop(ec *conn) {
	owner := ec.owner
	for reads := 0; ; {
		ready := owner.RecvState().Ready
		// Once the port is closing, its queue releases each completion as
		// it is pushed: reading on would be a loop that ends only when the
		// peer stops sending. The connection's close comes next and ends
		// the receive.
		closing := ready && reads > 0 && e.port.Closed()
		ec.mu.Lock()
		switch {
		case ready && ec.st&ecClosed != 0:
			ec.mu.Unlock()
			owner.Deliver(nil, 0, engine.ErrCanceled)
			continue
		case ready && ec.st&ecReadable != 0 && !closing:
			ec.st &^= ecAgain // the read and the look after it see what that flagged
			ec.mu.Unlock()
			e.readOnce(ec)
			reads++
			continue
		case ready && ec.shutErr != 0:
			// Nothing to read, and the socket is broken: a shutdown
			// failed, which no read would report.
			err := os.NewSyscallError("shutdown", syscall.Errno(ec.shutErr))
			ec.mu.Unlock()
			owner.Deliver(nil, 0, err)
			continue
		case ec.st&ecAgain != 0:
			ec.st &^= ecAgain
			ec.mu.Unlock()
			continue
		}
		ec.st &^= ecReading
		closeFD, reset := ec.releasableLocked()
		ec.mu.Unlock()
		if closeFD {
			e.closeFD(ec, reset)
		}
		return
	}
}

// readOnce reads once from ec into a pooled buffer and delivers the result.
func (e *Engine) readOnce(ec *conn) {
	b := e.pool.Get()
	n, injected, err := e.read(ec.fd, b.B)
	if n > 0 {
		if n < len(b.B) {
			// Drained (later data raises a new edge), unless the peer's
			// FIN or an error is still to be read.
			ec.mu.Lock()
			if ec.st&(ecAgain|ecHup) == 0 {
				ec.st &^= ecReadable
			}
			ec.mu.Unlock()
		}
		ec.owner.Deliver(b, n, nil)
		return
	}
	e.pool.Put(b)
	switch {
	case err == unix.EAGAIN:
		if injected {
			return // no read was made: the socket may still be readable, so readLoop reads again
		}
		ec.mu.Lock()
		if ec.st&ecAgain == 0 {
			ec.st &^= ecReadable
		}
		ec.mu.Unlock()
	case err == nil:
		// EOF, or a reset whose error a write in progress took (read(2)
		// then returns 0): once that write has reported its failure, the
		// owner delivers it instead of EOF.
		ec.mu.Lock()
		if ec.st&ecWriting != 0 {
			ec.st = ec.st&^ecReadable | ecEOFWait
			ec.mu.Unlock()
			return
		}
		ec.mu.Unlock()
		ec.owner.Deliver(nil, 0, io.EOF)
	default:
		ec.owner.Deliver(nil, 0, os.NewSyscallError("read", err))
	}
}
