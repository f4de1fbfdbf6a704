package iocp

import (
	"fmt"
	"syscall"

	"cport.dev/cport/internal/engine"
)

// errAdopt is the error of adopting a socket on this engine, for now: a
// socket of Go's net is associated with the runtime's own completion
// port, which no second CreateIoCompletionPort can change, so the engine
// would need a duplicate (WSADuplicateSocket), which it does not make yet.
var errAdopt = fmt.Errorf("cport: iocp: adopting a socket: %w", engine.ErrUnsupported)

// AdoptConn cannot adopt on this engine.
func (e *eng) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	return nil, errAdopt
}

// AdoptListener cannot adopt on this engine.
func (e *eng) AdoptListener(sc syscall.Conn, owner engine.ListenerOwner) (engine.Listener, error) {
	return nil, errAdopt
}
