package sockopt

import (
	"errors"
	"syscall"
)

// NetError makes an error of Go's net package match, with errors.Is, the
// POSIX error the rest of cport speaks of (see WinError): a reset reported
// as WSAECONNRESET then matches syscall.ECONNRESET on Windows too. The
// portable engine reports its errors through it.
func NetError(err error) error {
	var errno syscall.Errno
	if err == nil || !errors.As(err, &errno) {
		return err
	}
	posix := posixErrno(errno)
	if posix == 0 {
		return err
	}
	return &aliasError{err: err, posix: posix}
}

// aliasError is err that errors.Is also matches to posix.
type aliasError struct {
	err   error
	posix syscall.Errno
}

func (e *aliasError) Error() string        { return e.err.Error() }
func (e *aliasError) Unwrap() error        { return e.err }
func (e *aliasError) Is(target error) bool { return target == e.posix }
