package portable

import (
	"net"
	"os"
	"syscall"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// AdoptConn makes a connection of a duplicate of sc's socket, through
// net.FileConn, once sockopt.Adopt has checked it.
func (e *Engine) AdoptConn(sc syscall.Conn, newOwner engine.NewConnFunc) (engine.ConnOwner, error) {
	f, err := adoptFile(sc, false)
	if err != nil {
		return nil, err
	}
	nc, err := net.FileConn(f)
	f.Close() // net.FileConn has a duplicate of its own
	if err != nil {
		return nil, err
	}
	c := &conn{e: e, nc: nc, wake: make(chan struct{}, 1)}
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	c.owner = newOwner(c, nc.LocalAddr(), nc.RemoteAddr())
	return c.owner, nil
}

// AdoptListener makes a listener of a duplicate of sc's socket, through
// net.FileListener.
func (e *Engine) AdoptListener(sc syscall.Conn, owner engine.ListenerOwner) (engine.Listener, error) {
	f, err := adoptFile(sc, true)
	if err != nil {
		return nil, err
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return &listener{e: e, ln: ln, owner: owner, wake: make(chan struct{}, 1)}, nil
}

func adoptFile(sc syscall.Conn, listen bool) (*os.File, error) {
	a, err := sockopt.Adopt(sc, listen)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(a.FD), "cport-adopted"), nil
}

// Detach returns a duplicate of the socket (the File method of Go's
// *net.TCPConn and *net.UnixConn); package cport then closes c.
func (c *conn) Detach() (*os.File, error) {
	fc, ok := c.nc.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, engine.ErrUnsupported
	}
	return fc.File()
}
