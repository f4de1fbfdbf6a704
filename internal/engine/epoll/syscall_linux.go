package epoll

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// The system calls the engine issues on a socket, each behind
// Config.Faults (see doc.go, "Faults"). An injected errno means the call was
// not made: the engine then acts as on the kernel's errno, except that an
// injected EAGAIN tells it nothing about the socket (no buffer was found
// empty or full), so it leaves the readiness it knows of as it was and the
// caller's loop tries again.

// fail reports the errno Config.Faults makes the next call of kind c fail
// with, or 0. Without Faults (production) it is one nil check.
func (e *Engine) fail(c engine.Call) syscall.Errno {
	return e.faults.Fail(c)
}

// accept4 accepts a connection on fd, non-blocking and close-on-exec.
// injected says the error was made up by Faults.
func (e *Engine) accept4(fd int32) (nfd int, sa unix.Sockaddr, injected bool, err error) {
	if errno := e.fail(engine.CallAccept); errno != 0 {
		return -1, nil, true, errno
	}
	nfd, sa, err = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	return nfd, sa, false, err
}

// read is read(2), retrying EINTR. injected says the error was made up by
// Faults.
func (e *Engine) read(fd int32, p []byte) (n int, injected bool, err error) {
	for {
		if errno := e.fail(engine.CallRecv); errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			return 0, true, errno
		}
		n, err = unix.Read(int(fd), p)
		if err != unix.EINTR {
			return n, false, err
		}
	}
}

// writev is sockopt.Writev (which retries EINTR). injected says the error
// was made up by Faults.
func (e *Engine) writev(fd int32, vecs []unix.Iovec) (n int, injected bool, err error) {
	for {
		errno := e.fail(engine.CallSend)
		switch errno {
		case 0:
			n, err = sockopt.Writev(int(fd), vecs)
			return n, false, err
		case unix.EINTR:
			continue // as sockopt.Writev does
		}
		return 0, true, errno
	}
}

// shutdown is shutdown(2), retrying EINTR and EAGAIN (neither of which a
// socket's shutdown returns, but Faults may). It returns the errno of a
// failure.
func (e *Engine) shutdown(fd int32, how int) syscall.Errno {
	for {
		errno := e.fail(engine.CallShutdown)
		if errno == 0 {
			errno = toErrno(unix.Shutdown(int(fd), how))
		}
		if errno != unix.EINTR && errno != unix.EAGAIN {
			return errno
		}
	}
}

// closeSocket closes fd, which nobody uses any more. An error of close(2)
// leaves nothing to do: the descriptor is gone either way, and closing it
// again could close another socket that has taken its number since.
// Faults is asked after the real close: its failure changes nothing either.
func (e *Engine) closeSocket(fd int32) {
	unix.Close(int(fd))
	e.fail(engine.CallClose)
}

// epollAdd adds fd to the epoll set epfd (epoll_ctl(2) EPOLL_CTL_ADD),
// retrying EINTR and EAGAIN.
func (e *Engine) epollAdd(epfd int, fd int32, ev *unix.EpollEvent) error {
	for {
		errno := e.fail(engine.CallPoll)
		if errno == 0 {
			errno = toErrno(unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), ev))
		}
		switch errno {
		case 0:
			return nil
		case unix.EINTR, unix.EAGAIN:
			continue
		}
		return os.NewSyscallError("epoll_ctl", errno)
	}
}

// toErrno returns the errno of a system call's error, 0 for nil.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return unix.EIO // cannot happen: x/sys/unix returns errnos
}
