package chat

import (
	"container/list"
	"sync/atomic"
	"time"

	"cport.dev/cport"
)

// A session is one connected client.
type session struct {
	conn *cport.Conn
	idx  int32 // index in hub.sessions, guarded by hub.mu; -1 once removed
	// For Config.MessageTimeout: carried is how many bytes of an
	// incomplete message split held after the last receive, owned like
	// split; msgStart is when that message started (Server.clock; 0: none
	// is), set by the worker holding the receive, read by the sweeper.
	carried int32

	// split is owned by whichever worker holds the session's receive
	// completion: cport delivers them one at a time (Conn.RecvMulti), so
	// no lock is needed.
	split splitter
	// flow is the session's flow control (see flow.go), made at the first
	// receive it relays under Config.SenderLimit, SenderMessages or
	// MessageRate: a client that never sends holds none. Owned like
	// split, and by the flow goroutine while the session is paused.
	flow *sessionFlow
	// rate is the budget of Config.MessageRate, allocated at the
	// session's first message when there is one; owned like split, and
	// read by the flow goroutine while the session is paused.
	rate *rateBudget

	// lastRecv is when the client last sent something (unix nanoseconds),
	// for the idle timeout; kept only when there is one.
	lastRecv atomic.Int64

	// period is one more than the last period of contendPeriod in which
	// the session relayed (its low bits; 0: none), for flow.contended.
	// Owned like split.
	period uint32
	// state is where the session stands: open (the receive goes on),
	// halfClosed (the client ended its stream: no receive, but still in
	// the hub, receiving, until its linger fires or it is evicted to keep
	// Config.HalfCloseMax) or released (out of the hub).
	state atomic.Int32
	// msgStart goes with carried above (Config.MessageTimeout).
	msgStart atomic.Int64

	// For Config.WriteTimeout, owned by the sweeper goroutine: written is
	// the low 32 bits of conn.Written() as of the last sweep (enough to
	// see a change between two sweeps, a second apart at most), stalled
	// the first sweep since it last changed that found bytes queued
	// (Server.clock; 0: none).
	written uint32
	// perIP says the session is counted under its source address for
	// Config.MaxConnsPerIP (ipOf its RemoteAddr); set at accept, then
	// read-only.
	perIP bool
	// secure says the session is a TLS client's (Config.TLS): ext.tls is
	// set. Both are set before the session is published, then read-only.
	secure bool
	// web says the session is a WebSocket client's (Config.WSAddr):
	// ext.ws is set. Both are set at accept, then read-only.
	web bool
	// stalled goes with written above (Config.WriteTimeout, the
	// sweeper's); it sits here, after the flags, so that they pack.
	stalled int64

	// why is set once, by the first kill; read when the connection ends.
	why atomic.Pointer[disconnect]

	// ext holds what few sessions need, allocated when one does: the stay
	// of a half-closed session (its linger, set before state becomes
	// halfClosed and read only after state was seen halfClosed: an open
	// plain session has none), the TLS of a TLS client's.
	ext *sessionExt
}

// sessionFlow is a sending session's flow control (Config.SenderLimit,
// SenderMessages, MessageRate: see flow.go), owned like session.split,
// and by the flow goroutine while the session is paused.
type sessionFlow struct {
	// out holds the session's own messages, a reference each, until they
	// are written to every client (Config.SenderLimit); nil when none is.
	out []kept
	// held is the receive completion held while the session is paused,
	// set by the worker that pauses it and taken by the flow goroutine;
	// it points to the copy kept, allocated at the first pause and kept
	// for the next.
	held *cport.Completion
	// resumeBelow is what the session's messages still queued must fall
	// to for a session paused by SenderLimit to go on, set before it is
	// paused (overLimit).
	resumeBelow int64
	// heldAt is where the relaying of the held receive's buffer stopped
	// when the session was paused in the middle of it (a flood of small
	// messages is relayed a share at a time); 0 when it was paused at the
	// end.
	heldAt int32
	// byCount says the session was paused for the number of its messages
	// queued (Config.SenderMessages): it goes on once half of that is
	// left. Set before it is paused, like resumeBelow.
	byCount bool
}

// sessionExt is the part of a session that few sessions need.
type sessionExt struct {
	linger halfClose
	tls    *tlsSide
	ws     *wsSide
}

// halfClose is a half-closed session's stay (Config.HalfCloseTimeout):
// its timer, and its element in Server.lingering while it is listed there,
// guarded by Server.lingerMu.
type halfClose struct {
	timer *time.Timer
	at    *list.Element
}

// States of a session.
const (
	stateOpen int32 = iota
	stateHalfClosed
	stateReleased
)

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
// ending. A client that misbehaved (a slow consumer, bad input) is reset at
// once (RST: Conn.Abort), so that the kernel keeps none of its unsent data;
// an idle one is closed gracefully. An open session's receive then
// completes with cport.ErrCanceled, and the worker that sees it logs the
// reason and unregisters the session; a half-closed session has no receive
// left, so its linger timer is fired to do that.
func (s *session) kill(reason string, err error) {
	if !s.why.CompareAndSwap(nil, &disconnect{reason: reason, err: err}) {
		return
	}
	switch {
	case (reason == reasonIdle || reason == reasonWSClose) && s.secure:
		// Its writer writes what is queued (a WebSocket close frame
		// among it), then close_notify, then closes.
		s.ext.tls.close()
	case reason == reasonIdle || reason == reasonWSClose:
		s.conn.Close()
	default:
		s.conn.Abort()
	}
	s.expire()
}

// queued returns the bytes queued to the client and not yet written: for
// a TLS client, the plaintext waiting for its writer as well.
func (s *session) queued() int {
	if s.secure {
		return s.ext.tls.queued() + s.conn.Queued()
	}
	return s.conn.Queued()
}

// send queues m, shared, to the client; it fails once the connection is
// closed or broken.
func (s *session) send(m *cport.Msg) error {
	if s.secure {
		return s.ext.tls.send(m)
	}
	return s.conn.SendQuiet(m)
}

// expire ends a half-closed session's stay now, from the timer's own
// goroutine: its caller may hold hub.mu. It does nothing to an open one.
func (s *session) expire() {
	if s.state.Load() == stateHalfClosed {
		s.ext.linger.timer.Reset(0)
	}
}
