package cport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"cport.dev/cport/internal/engine"
)

// AdoptConn associates an existing connected stream socket with p under
// the completion key key, as if the port had accepted or dialed it: a
// TCP connection (IPv4 or IPv6) or a Unix stream socket, given as a
// *net.TCPConn, a *net.UnixConn, an *os.File (say, inherited across a
// restart) or any other syscall.Conn.
//
// The port takes a duplicate of the descriptor, as net.FileConn does: c
// stays the caller's, who closes it (at once, typically) and should not
// read or write through it meanwhile, as the two share one socket.
// Closing c does not close the port's Conn, nor the reverse: the socket
// lives until both are closed, and the peer sees an end of stream only
// then. The socket is made non-blocking, a flag of the socket shared with
// c (Go's net keeps its sockets non-blocking anyway).
//
// A socket that is not a TCP or Unix stream socket (UDP, a regular file,
// a pipe), a listening one (see AdoptListener), one not connected or a
// closed c is an error, and so is a closed port (ErrClosed). An engine
// that cannot adopt returns an error matching ErrUnsupported that names
// it: portable on Windows, and iocp for a socket that Go's runtime holds
// (one of Go's net, or an os.File of an overlapped handle: its
// association with the runtime's completion port is the socket's and
// cannot move); iocp adopts a TCP socket handle inherited from a parent
// process, wrapped in a syscall.Conn of the caller's, but no Unix socket.
func (p *Port) AdoptConn(c syscall.Conn, key uint64) (*Conn, error) {
	if c == nil {
		return nil, &OpError{Op: "adopt", Backend: p.backend, Err: errors.New("nil socket")}
	}
	// Under p.mu, as Listen: Close cannot slip in between the adoption
	// and the registration.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	var conn *Conn
	_, err := p.eng.AdoptConn(c, func(ec engine.Conn, laddr, raddr net.Addr) engine.ConnOwner {
		conn = newConnAddrs(p, ec, laddr, raddr)
		conn.key.Store(key)
		return (*connOwner)(conn)
	})
	if err != nil {
		return nil, &OpError{Op: "adopt", Backend: p.backend, Err: err}
	}
	conn.next = p.conns
	if conn.next != nil {
		conn.next.prev = conn
	}
	p.conns = conn
	p.nconns++
	return conn, nil
}

// AdoptListener associates an existing listening stream socket with p
// under the completion key key, as if Listen had opened it: for servers
// started by systemd's socket activation (the descriptors from 3 on, as
// an *os.File) or handed a listener across a restart. l is a
// *net.TCPListener, a *net.UnixListener, an *os.File or any other
// syscall.Conn of a TCP (IPv4 or IPv6) or Unix listening socket.
//
// As AdoptConn, the port takes a duplicate of the descriptor: l stays the
// caller's to close, which does not close the port's Listener nor the
// reverse (the socket listens until both are closed), and l should not
// accept meanwhile. The connections accepted on a Unix socket have no
// addresses (Conn.LocalAddr and RemoteAddr are nil). Errors are those of
// AdoptConn, for a socket that is not listening.
func (p *Port) AdoptListener(l syscall.Conn, key uint64) (*Listener, error) {
	return p.adoptListener(l, key, "")
}

// adoptListener is AdoptListener; unlink is the file the Listener removes
// at its close (Listen of a Unix socket), if any.
func (p *Port) adoptListener(l syscall.Conn, key uint64, unlink string) (*Listener, error) {
	if l == nil {
		return nil, &OpError{Op: "adopt", Backend: p.backend, Err: errors.New("nil socket")}
	}
	ln := &Listener{p: p, key: key, unlink: unlink}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	el, err := p.eng.AdoptListener(l, (*listenerOwner)(ln))
	if err != nil {
		return nil, &OpError{Op: "adopt", Backend: p.backend, Err: err}
	}
	ln.io, ln.addr = el, el.Addr()
	p.listeners[ln] = struct{}{}
	return ln, nil
}

// Detach takes the connection's socket out of the port without closing
// it, and returns it as an *os.File (a duplicate of the descriptor, the
// caller's to close; net.FileConn makes a net.Conn of it). The Conn is
// closed: later calls on it return ErrClosed, and the peer sees nothing
// of it. The socket stays non-blocking, as Go's os and net keep theirs.
//
// Only an idle connection can leave: with a receive in progress, a
// completion of a receive not yet released, or a message queued or being
// written, Detach returns ErrBusy and changes nothing; on a closed Conn,
// ErrClosed; on one adapted to net.Conn (NetConn), ErrAdapted. An engine that cannot detach returns an error matching
// ErrUnsupported that names it, and changes nothing: iocp (an
// association with a completion port cannot be undone) and portable on
// Windows. Any other error (no descriptor to be had; on uring, a receive
// that the port had ended on a failure still in the kernel) leaves the
// connection closed. Detach may be called from a Config.Handler.
func (c *Conn) Detach() (*os.File, error) {
	d, ok := c.io.(engine.Detacher)
	if !ok {
		return nil, &OpError{Op: "detach", Backend: c.p.backend, Addr: c.RemoteAddr(),
			Err: fmt.Errorf("cport: %s: detaching a connection: %w", c.p.backend, ErrUnsupported)}
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, ErrClosed
	case c.netConnLocked() != nil:
		c.mu.Unlock()
		return nil, ErrAdapted
	case c.recvArmed || c.recvOut || c.backlogLen() > 0 || c.sending || len(c.sendq) > 0:
		c.mu.Unlock()
		return nil, ErrBusy
	}
	// Closed from here: no receive or send can start, and Port.Close
	// leaves the engine's socket to this call.
	c.closed = true
	c.setIOClosedLocked()
	c.mu.Unlock()
	f, err := d.Detach()
	c.closeIO(false)
	if err != nil {
		return nil, &OpError{Op: "detach", Backend: c.p.backend, Addr: c.RemoteAddr(), Err: err}
	}
	return f, nil
}
