package chat

import (
	"sync/atomic"

	"cport.dev/cport"
)

// A session is one connected client.
type session struct {
	conn *cport.Conn
	key  uint64 // set by hub.add before the session is shared, then read-only
	idx  int    // index in hub.sessions, guarded by hub.mu

	// split is owned by whichever worker holds the session's receive
	// completion: cport delivers them one at a time (Conn.RecvMulti), so
	// no lock is needed.
	split splitter

	// lastRecv is when the client last sent something (unix nanoseconds),
	// for the idle timeout; kept only when there is one.
	lastRecv atomic.Int64

	// why is set once, by the first kill; read when the connection ends.
	why atomic.Pointer[disconnect]
}

// A disconnect says why the server ended a connection.
type disconnect struct {
	reason string
	err    error // the detail, if any
}

// Reasons the server ends a connection, as logged and counted.
const (
	reasonSlowConsumer = "slow consumer"
	reasonBadInput     = "bad input"
	reasonIdle         = "idle timeout"
)

// kill ends the session's connection for reason, unless it is already
// ending. The receive then completes with cport.ErrCanceled, and the worker
// that sees it logs the reason and unregisters the session.
func (s *session) kill(reason string, err error) {
	if s.why.CompareAndSwap(nil, &disconnect{reason: reason, err: err}) {
		s.conn.Close()
	}
}
