//go:build !linux

package portable

import (
	"fmt"
	"syscall"

	"cport.dev/cport/internal/engine"
)

// errAdopt is the error of adopting a socket where the portable engine
// cannot: Go's net has no FileConn on Windows, and elsewhere the engine
// checks the socket with Linux's socket options.
var errAdopt = fmt.Errorf("cport: portable: adopting a socket on this system: %w", engine.ErrUnsupported)

// AdoptConn cannot adopt on this system.
func (e *Engine) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	return nil, errAdopt
}

// AdoptListener cannot adopt on this system.
func (e *Engine) AdoptListener(sc syscall.Conn, owner engine.ListenerOwner) (engine.Listener, error) {
	return nil, errAdopt
}
