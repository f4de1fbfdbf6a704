//go:build !unix

package load

import "syscall"

// shortReadDrains is false: outside Unix, receivers read through the
// connection's Read, which waits for more only after EAGAIN.
const shortReadDrains = false

// rawLoop reports that it did not run: outside Unix, receivers read
// through the connection's Read.
func (c *client) rawLoop(rc syscall.RawConn) (bool, error) { return false, nil }
