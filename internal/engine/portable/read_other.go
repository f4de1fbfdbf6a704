//go:build !unix

package portable

import "cport.dev/cport/internal/engine"

// read reads what the connection has, in a buffer it returns (nil when n is
// 0): b, n > 0, nil; or nil, 0, and io.EOF or the error.
//
// Here the buffer is held while the read blocks (see readHolding), so a
// silent connection pins one. On Windows, waiting first with RawConn.Read
// (Go's zero-byte WSARecv) would avoid that, but under Wine 8 it left a
// write to a peer that reset pending for good (the conformance test
// SendQuietReset), and it is unverified on Windows itself; the iocp engine
// is Windows' engine.
func (c *conn) read() (*engine.Buf, int, error) { return c.readHolding() }
