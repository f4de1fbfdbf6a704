package sockopt

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dup returns a duplicate of sc's descriptor (F_DUPFD_CLOEXEC), the
// caller's to close.
func Dup(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

// DupNonblock is Dup, the duplicate made non-blocking. The flag is the
// open file's: sc's own descriptor is non-blocking too, as Go's net and os
// already keep their sockets.
func DupNonblock(sc syscall.Conn) (int, error) {
	fd, err := Dup(sc)
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}
