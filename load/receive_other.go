//go:build !unix

package load

import "syscall"

// rawLoop reports that it did not run: outside Unix, receivers read
// through the connection's Read.
func (c *client) rawLoop(rc syscall.RawConn) (bool, error) { return false, nil }
