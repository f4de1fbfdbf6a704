package portable

import (
	"io"
	"net"
	"syscall"

	"cport.dev/cport/internal/sockopt"
)

// eofOrReset is sockopt.EOFOrReset for a connection of Go's net package:
// the end of stream, or a reset whose error a write already took.
func eofOrReset(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return io.EOF
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return io.EOF
	}
	res := io.EOF
	rc.Control(func(fd uintptr) { res = sockopt.EOFOrReset(int(fd)) })
	return res
}
