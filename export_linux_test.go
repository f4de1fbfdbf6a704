package cport

// SetURingSizes shrinks the uring engine's rings for the ports opened until
// restore is called: sq submission entries (the completion queue is 4x),
// and bufs provided receive buffers.
func SetURingSizes(sq uint32, bufs uint16) (restore func()) {
	oldSQ, oldBufs := uringEntries, uringBufs
	uringEntries, uringBufs = sq, bufs
	return func() { uringEntries, uringBufs = oldSQ, oldBufs }
}

// URingFailEnv is the environment variable that makes the uring engine's
// setup fail.
const URingFailEnv = uringFailEnv
