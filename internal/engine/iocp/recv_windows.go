package iocp

import (
	"io"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// Recv starts the receive the owner describes, unless it is under way.
func (c *conn) Recv() {
	s := (*sock)(c)
	s.e.pump(s)
}

// Release takes back a buffer the owner was handed, and lets the receive
// go on.
func (c *conn) Release(b *engine.Buf) {
	s := (*sock)(c)
	if b != nil {
		s.e.bufs.Put(b)
	}
	s.e.pump(s)
}

// Close closes the socket, with a reset if asked (see closeSock); a
// receive in progress ends with ErrCanceled, at once if nothing is pending,
// else when its packet arrives, and so does a send in progress.
func (c *conn) Close(reset bool) {
	s := (*sock)(c)
	s.e.closeSock(s, reset)
	s.e.pump(s) // an armed receive with nothing pending ends now
}

// Shutdown shuts the writing side of the socket down (shutdown with
// SD_SEND): the peer reads an end of stream after what was written, and
// the receive goes on. Under s.mu and only while s is open, so that it is
// ordered with Close and never names a handle closed (or reused by
// another socket since). Should it fail, the peer would wait for an end of
// stream that never comes: the connection is broken (breakConn), and the
// receive ends with the shutdown's error.
func (c *conn) Shutdown() {
	s := (*sock)(c)
	s.mu.Lock()
	var err error
	if !s.closed {
		err = s.e.shutdownLocked(s, windows.SHUT_WR) // SD_SEND
	}
	s.mu.Unlock()
	if err != nil {
		s.e.breakConn(s, sockopt.WinError("shutdown", err))
	}
}

// breakConn ends the receive of a connection whose send or shutdown
// failed: with err, or with nil for the send's failure, which the owner
// reports (ConnOwner.Broken). The socket is shut down both ways and a
// pending zero-byte receive canceled, so that its packet comes now.
func (e *eng) breakConn(s *sock, err error) {
	s.mu.Lock()
	if !s.broken {
		s.broken, s.brokenErr = true, err
	}
	if !s.closed {
		e.shutdownLocked(s, windows.SHUT_RDWR) // a failure leaves the cancel, which ends the receive all the same
		if s.readPending {
			windows.CancelIoEx(s.h, &s.rop.o)
		}
	}
	s.mu.Unlock()
	e.pump(s)
}

// discardInput reads and drops what is waiting unread on a connection
// about to be closed, up to a bound: a socket closed with unread input is
// reset instead of shut down gracefully (RFC 2525, 2.17, which Windows and
// Linux both follow), and a reset destroys the data still on its way to the
// peer.
func (e *eng) discardInput(h windows.Handle) {
	b := e.bufs.Get()
	defer e.bufs.Put(b)
	for range 64 {
		if n, err := recvNonblock(h, b.B); n <= 0 || err != nil {
			return
		}
	}
}

func (e *eng) readDone(s *sock, err error) {
	s.mu.Lock()
	s.readPending = false
	if err != nil && err != windows.ERROR_OPERATION_ABORTED && s.readErr == nil {
		s.readErr = sockopt.WinError("wsarecv", err)
	}
	s.mu.Unlock()
	e.pump(s)
}

// pump moves s's receive on as far as it can without waiting (pumpOnce);
// see runPump.
func (e *eng) pump(s *sock) { e.runPump(s, false) }

// runPump moves the receive of s on as far as it can without waiting: a
// stream's (pumpOnce) or, if datagram, a datagram socket's
// (packetPumpOnce). One goroutine at a time runs it, and a call while a
// receive is pending (the zero-byte WSARecv, or WSARecvFrom) does nothing:
// its packet calls it again. A call while another goroutine runs it makes
// that one go round once more.
func (e *eng) runPump(s *sock, datagram bool) {
	s.mu.Lock()
	if s.pumping || s.readPending {
		s.again = true
		s.mu.Unlock()
		return
	}
	s.pumping = true
	s.mu.Unlock()
	for {
		if datagram {
			e.packetPumpOnce(s)
		} else {
			e.pumpOnce(s)
		}
		s.mu.Lock()
		if s.again && !s.readPending {
			s.again = false
			s.mu.Unlock()
			continue
		}
		s.again, s.pumping = false, false
		s.mu.Unlock()
		return
	}
}

func (e *eng) pumpOnce(s *sock) {
	co := s.conn
	for {
		st := co.RecvState()
		switch {
		case !st.Ready:
			return
		case st.Closed:
			co.Deliver(nil, 0, engine.ErrCanceled)
			continue
		case e.cfg.Port.Closed():
			// Every completion is dropped, and released at once: draining
			// would go on as long as the peer writes. Port.Close closes the
			// connection next, which ends the receive.
			return
		}
		s.mu.Lock()
		if s.broken {
			err := s.brokenErr
			s.mu.Unlock()
			if err == nil {
				err = io.EOF // the owner reports the send's error (ConnOwner.Broken)
			}
			co.Deliver(nil, 0, err)
			continue
		}
		if s.closed {
			s.mu.Unlock()
			return // Conn.Close is on its way: RecvState says closed soon
		}
		if rerr := s.readErr; rerr != nil {
			// The zero-byte receive failed: a reset, whose data the stack
			// discards anyway. Report it before reading, for a stack may
			// report a socket's error only once (Wine over Linux does).
			s.readErr = nil
			s.mu.Unlock()
			co.Deliver(nil, 0, rerr)
			continue
		}
		b := e.bufs.Get()
		n, err := 0, e.fail(engine.CallRecv)
		if err == nil {
			n, err = recvNonblock(s.h, b.B)
		}
		if interrupted(err) {
			s.mu.Unlock()
			e.bufs.Put(b)
			continue
		}
		if err == windows.WSAEWOULDBLOCK {
			e.bufs.Put(b)
			// Nothing to read: wait for data with a zero-byte receive, which
			// pins no buffer.
			s.readPending = true
			done, err := s.startLocked(&s.rop, func(o *windows.Overlapped) error {
				if err := e.fail(engine.CallRecv); err != nil {
					return err
				}
				var flags uint32
				buf := windows.WSABuf{Len: 0, Buf: &s.zb}
				return windows.WSARecv(s.h, &buf, 1, &s.rop.qty, &flags, o, nil)
			})
			if done {
				s.readPending = false
			}
			s.mu.Unlock()
			if !done {
				return
			}
			if err != nil && !interrupted(err) {
				co.Deliver(nil, 0, sockopt.WinError("wsarecv", err))
			}
			continue // data (or the end) is there already, or the call is made again
		}
		s.mu.Unlock()
		switch {
		case n > 0:
			co.Deliver(b, n, nil)
		case err == nil:
			e.bufs.Put(b)
			co.Deliver(nil, 0, io.EOF)
		default:
			e.bufs.Put(b)
			co.Deliver(nil, 0, sockopt.WinError("recv", err))
		}
	}
}
