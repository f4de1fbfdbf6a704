//go:build !linux

package cport

import (
	"io"
	"net"
)

// netConnEOF reports the end of stream: only Linux tells a reset that a
// send already reported from a graceful close (see socket_linux.go).
func netConnEOF(net.Conn) error { return io.EOF }
