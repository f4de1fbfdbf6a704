package portable

import (
	"errors"
	"net"

	"cport.dev/cport/internal/engine"
)

// readHolding reads with Go's net package: simple, but the buffer is taken
// before the read blocks and held for as long as the connection is silent.
// It is the fallback where the descriptor cannot be waited on alone.
func (c *conn) readHolding() (*engine.Buf, int, error) {
	b := c.e.bufs.Get()
	var (
		n   int
		err error
	)
	if errno := c.e.faults.Fail(engine.CallRecv); errno != 0 && !retriedByNet(errno) {
		err = c.opError("read", readCall, errno)
	} else {
		n, err = c.nc.Read(b.B)
	}
	if n <= 0 {
		c.e.bufs.Put(b)
		return nil, 0, closedError(err)
	}
	return b, n, closedError(err)
}

// closedError turns the error of a read on a socket closed under it into
// the contract's ErrCanceled.
func closedError(err error) error {
	if err != nil && errors.Is(err, net.ErrClosed) {
		return engine.ErrCanceled
	}
	return err
}
