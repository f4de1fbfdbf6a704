package iocp

import (
	"unsafe"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// Flush starts a WSASend of the connection's send queue at once.
func (c *conn) Flush() {
	s := (*sock)(c)
	s.e.write(s)
}

// write starts a WSASend of everything queued on s's connection, and goes on
// while sends complete at once and more is queued.
func (e *eng) write(s *sock) {
	co := s.conn
	for {
		s.iov = co.SendBatch(s.iov[:0], maxIov)
		s.bufs = s.bufs[:0]
		for _, b := range s.iov {
			s.bufs = append(s.bufs, windows.WSABuf{Len: uint32(len(b)), Buf: unsafe.SliceData(b)})
		}
		s.mu.Lock()
		if closed := s.closed; closed || len(s.bufs) == 0 {
			s.mu.Unlock()
			// Nothing to write: the socket is closed, or the owner
			// failed what was queued before it was taken (a write
			// deadline), which is no failure of the socket's.
			err := engine.ErrCanceled
			if !closed {
				err = nil
			}
			if !co.SendDone(0, err) {
				return
			}
			continue
		}
		// Winsock captures the WSABUF array during the call; the bytes
		// themselves stay queued (and referenced) until SendDone. Both stay
		// pinned until the packet all the same (see the package doc).
		s.wop.pin.Pin(&s.bufs[0])
		for _, b := range s.iov {
			if len(b) > 0 {
				s.wop.pin.Pin(&b[0])
			}
		}
		e.writes.Add(1)
		done, err := s.startLocked(&s.wop, func(o *windows.Overlapped) error {
			if err := e.fail(engine.CallSend); err != nil {
				return err
			}
			return windows.WSASend(s.h, &s.bufs[0], uint32(len(s.bufs)), &s.wop.qty, 0, o, nil)
		})
		n := int(s.wop.qty)
		s.mu.Unlock()
		if !done {
			return
		}
		if interrupted(err) {
			continue // nothing was written: the same batch again
		}
		if !e.sendResult(s, n, err) {
			return
		}
	}
}

// sendResult accounts for a WSASend that wrote n bytes and ended with err,
// and reports whether more is queued to write.
func (e *eng) sendResult(s *sock, n int, err error) bool {
	if err != nil {
		err = sockopt.WinError("wsasend", err)
	}
	more := s.conn.SendDone(n, err)
	if err != nil && s.conn.Broken() != nil {
		e.breakConn(s, nil) // the receive ends with the send's error
	}
	return more
}
