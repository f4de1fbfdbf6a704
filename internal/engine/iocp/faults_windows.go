package iocp

import (
	"syscall"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/engine"
)

// fail asks Config.Faults whether the system call of kind c that the
// engine is about to make fails (see the package doc's "Faults"): the
// errno, as the call would have returned it, or nil, and the call is made.
// Nil Faults (production) cost this nil check.
func (e *eng) fail(c engine.Call) error {
	if errno := e.cfg.Faults.Fail(c); errno != 0 {
		return errno
	}
	return nil
}

// interrupted reports whether a call failed only because it was
// interrupted: it is made again, and nobody hears of it.
func interrupted(err error) bool {
	return err == syscall.EINTR || err == windows.WSAEINTR
}

// transientAccept reports whether an accept's error concerns only the
// connection being accepted (gone before it was: ECONNABORTED, EPROTO, and
// on Windows ERROR_NETNAME_DELETED or WSAECONNRESET, which Go's net skips
// too; refused: EPERM) or the call (EINTR, EAGAIN): accepting goes on at
// once, and nobody hears of it.
func transientAccept(err error) bool {
	switch err {
	case syscall.EINTR, syscall.EAGAIN, syscall.ECONNABORTED, syscall.EPROTO, syscall.EPERM,
		windows.WSAEINTR, windows.WSAEWOULDBLOCK, windows.ERROR_NETNAME_DELETED, windows.WSAECONNRESET:
		return true
	}
	return false
}

// resourceAccept reports whether an accept's error says the system is
// out of sockets or memory: accepting pauses (engine.NextAcceptPause),
// then goes on.
func resourceAccept(err error) bool {
	switch err {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		windows.WSAEMFILE, windows.WSAENOBUFS, windows.ERROR_NOT_ENOUGH_MEMORY, windows.ERROR_NO_SYSTEM_RESOURCES:
		return true
	}
	return false
}

// closesocket closes h. Its error, real or injected (CallClose, asked once
// the close is made), changes nothing: the handle is gone either way, and
// the engine never closes it again, for Windows may already have given its
// value to another socket.
func (e *eng) closesocket(h windows.Handle) {
	windows.Closesocket(h)
	e.fail(engine.CallClose)
}

// shutdownLocked shuts s's socket down (how: SHUT_WR, SHUT_RDWR), with s.mu
// held and s open, again if interrupted.
func (e *eng) shutdownLocked(s *sock, how int) error {
	for {
		err := e.fail(engine.CallShutdown)
		if err == nil {
			err = windows.Shutdown(s.h, how)
		}
		if !interrupted(err) {
			return err
		}
	}
}
