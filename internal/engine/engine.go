// Package engine is the contract between package cport and its engines.
// Read it first: it says what an engine is handed, what it reports, on which
// goroutine, and who owns each buffer and for how long.
//
// Two sides meet here. An engine (internal/engine/uring, epoll, iocp,
// portable) moves bytes: it implements [Engine], [Listener] and [Conn]. Package
// cport keeps the model: the completion queue, each connection's send queue
// and the order of its receives. It implements [Port], [ListenerOwner] and
// [ConnOwner], to which the engine reports. Neither side sees the other's
// types: an engine never imports package cport and never holds a *cport.Conn.
//
// # Calls into an engine
//
// Package cport calls an engine's methods from any goroutine (a worker, a
// user's goroutine), never while holding a lock of its own, and the methods
// return without blocking on the network. They start work; the results come
// back through the owners.
//
// # Reports out of an engine
//
// An engine calls the owners' methods from its own goroutines (a ring's
// loop, a poller, a reader), never while holding one of its own locks that a
// call into the engine could also take: the owners push completions, and a
// full or closed queue releases what it drops, which calls back into the
// engine (Conn.Release). The owners' methods never block on the network.
//
// # Buffers
//
//   - Receives: an engine reads into a [Buf] it owns (a pooled one, or a
//     slot of a kernel-registered ring) and hands it over with
//     ConnOwner.Deliver. From then on the user owns it, until package cport
//     gives it back with Conn.Release, exactly once. An engine never touches
//     a Buf it has handed over; a Buf handed back is the engine's again.
//   - Sends: ConnOwner.SendBatch returns the bytes of the messages queued on
//     a connection. They stay valid and unchanged, and the kernel may read
//     them, until the engine reports the write with ConnOwner.SendDone; the
//     messages are released only then. One write per connection is in
//     flight at a time.
//   - Memory the kernel reads or writes after the system call that named it
//     returns (io_uring's msghdr, iovecs, sockaddrs and provided buffers;
//     IOCP's OVERLAPPED and WSABUF) is the engine's: each engine says in its
//     package documentation how that memory is kept from moving or being
//     freed until the kernel's last word on it.
package engine

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Engine moves bytes for one port.
type Engine interface {
	// Listen opens a listening socket whose accepts report to owner.
	// Errors are the system's; package cport wraps them.
	Listen(network, address string, owner ListenerOwner) (Listener, error)
	// Dial opens a stream socket and starts connecting it to raddr, a
	// *net.TCPAddr (IPv4 or IPv6, by its IP) or a *net.UnixAddr, and
	// reports the outcome to owner exactly once: DialOwner.NewConn then
	// DialOwner.Connected, or DialOwner.Failed. The report may come
	// before Dial returns, on its caller's goroutine (a connect that
	// fails at once). An error returned means nothing was started and
	// owner hears nothing: the socket could not be made, or the engine
	// cannot dial that kind of address (an error wrapping
	// ErrUnsupported that names the engine: never a silent difference).
	// Package cport calls Dial neither concurrently with Close nor after
	// it; Close ends the dials still connecting, each with
	// Failed(ErrCanceled), or Connected should the connect win the race,
	// before it returns.
	Dial(raddr net.Addr, owner DialOwner) error
	// CancelDial ends owner's dial if it is still connecting: its socket
	// is closed and the owner told Failed(ErrCanceled), or Connected
	// should the connect win the race, on any goroutine, possibly before
	// CancelDial returns. A dial that has ended, or whose end is on its
	// way, is left alone. Package cport calls it neither concurrently
	// with Close nor after it.
	CancelDial(owner DialOwner)
	// AdoptConn takes a duplicate of sc's descriptor (a connected TCP or
	// Unix stream socket; anything else is an error), which the engine
	// then owns and closes; sc stays the caller's. It makes the
	// connection's owner with newOwner and returns it. An error means the
	// engine holds nothing of sc (an engine that cannot adopt: an error
	// wrapping ErrUnsupported that names it). Package cport calls it
	// neither concurrently with Close nor after it.
	AdoptConn(sc syscall.Conn, newOwner NewConnFunc) (ConnOwner, error)
	// AdoptListener is AdoptConn for a listening socket: a Listener as
	// Listen's, bound where sc is.
	AdoptListener(sc syscall.Conn, owner ListenerOwner) (Listener, error)
	// Submit is called by a worker that finished a batch of completions,
	// before it waits again: the moment to start what the batch queued
	// (deferred writes, prepared submissions) in as few system calls as
	// possible.
	Submit()
	// Stats returns the engine's counters.
	Stats() Stats
	// Close stops the engine: once it returns, the engine's goroutines
	// have ended, it calls no owner again and the kernel holds none of the
	// port's buffers. Package cport closes every listener and connection
	// before.
	Close()
}

// Listener is an engine's listening socket.
type Listener interface {
	// Addr returns the address the socket is bound to.
	Addr() net.Addr
	// Accept starts accepting, as ListenerOwner.AcceptState asks: once, or
	// on and on.
	Accept()
	// Close closes the socket. An accept in progress ends with
	// ListenerOwner.AcceptFailed(ErrCanceled, true).
	Close()
}

// Conn is an engine's connection.
type Conn interface {
	// Recv starts the receive that ConnOwner.RecvState describes, if the
	// engine has not already.
	Recv()
	// Release gives back a buffer handed over with ConnOwner.Deliver: the
	// receive may go on.
	Release(b *Buf)
	// Flush starts writing the connection's send queue, which became
	// non-empty while no write was in flight. The engine may defer the
	// write to gather more messages into it (see FlushGate), until its
	// next Submit or its own loop comes round, but not indefinitely.
	Flush()
	// Shutdown shuts the writing side of the socket down (shutdown(2)
	// SHUT_WR): the peer reads an end of stream after what was written.
	// Package cport calls it once, with no write in flight and none to
	// come; it may race with Close, which the engine orders.
	Shutdown()
	// Close closes the socket. A receive in progress ends with
	// ConnOwner.Deliver(nil, 0, ErrCanceled) and a write in progress with
	// ConnOwner.SendDone, once the kernel has let go of their buffers.
	// With reset, the connection is reset: SO_LINGER with a zero timeout
	// before the close, so the peer gets an RST and the kernel keeps
	// nothing of the connection (no unsent data, no FIN-WAIT state).
	// Without, the peer reads an end of stream after what was written.
	Close(reset bool)
}

// NewConnFunc makes the port's side of a connection an engine adopted
// (Engine.AdoptConn), between laddr and raddr (nil where unknown).
type NewConnFunc func(c Conn, laddr, raddr net.Addr) ConnOwner

// Detacher is a Conn whose socket can leave the engine without being
// closed (Conn.Detach in package cport). An engine whose connections do
// not implement it cannot detach them.
type Detacher interface {
	// Detach returns a duplicate of the socket's descriptor, which the
	// engine no longer watches (taken out of its poller), as an *os.File.
	// Package cport calls it with no receive armed, no write in flight
	// and none queued, the Conn not closed, and calls Close(false) right
	// after, whatever the outcome: the engine closes its own descriptor,
	// with no shutdown, and the socket lives on in the duplicate.
	Detach() (*os.File, error)
}

// Port is package cport's side of a port, as an engine sees it.
type Port interface {
	// Running returns how many workers are running completions now.
	Running() int
	// Inline reports whether the port runs its completions where they
	// complete (cport's Config.Handler), each run followed at once by the
	// engine's Submit: sends held while one runs need no timer. Constant
	// for the port's life.
	Inline() bool
	// Closed reports whether the port is closed.
	Closed() bool
}

// ListenerOwner is package cport's side of a listener.
type ListenerOwner interface {
	// AcceptState says whether an accept is in progress, and whether it
	// goes on after each connection. An accept stays in progress after
	// Listener.Close until the engine reports its end with AcceptFailed.
	AcceptState() (want, multi bool)
	// NewConn makes the port's side of a connection the engine accepted,
	// not yet seen by anyone: the engine keeps it with its own state, then
	// calls Accepted. It copies what it keeps of raddr: an engine may
	// reuse raddr's memory once it returns (uring does, for the next
	// accept).
	NewConn(c Conn, laddr, raddr net.Addr) ConnOwner
	// Accepted delivers the connection made by NewConn. It reports whether
	// accepting goes on; false with the port closed, in which case the
	// connection was closed (Conn.Close was called).
	Accepted(c ConnOwner) bool
	// AcceptFailed reports an accept that failed with err (ErrCanceled
	// once the listener is closed); final says accepting cannot go on.
	// It reports whether accepting goes on.
	AcceptFailed(err error, final bool) bool
}

// DialOwner is package cport's side of a dial (Engine.Dial): one report
// ends it.
type DialOwner interface {
	// NewConn makes the port's side of the connection the engine
	// connected, not yet seen by anyone: the engine keeps it with its own
	// state, then calls Connected. laddr is the socket's local address
	// (nil if unknown), raddr the peer's.
	NewConn(c Conn, laddr, raddr net.Addr) ConnOwner
	// Connected completes the dial with the connection made by NewConn.
	// With the port closed, the connection is closed instead (Conn.Close
	// is called, maybe before Connected returns).
	Connected(c ConnOwner)
	// Failed completes the dial with err: the system's error (package
	// cport wraps it), or ErrCanceled for a dial the engine's Close
	// ended. The engine has closed the socket.
	Failed(err error)
}

// ConnOwner is package cport's side of a connection: its send queue and the
// state of its receive.
type ConnOwner interface {
	// RecvState says where the receive stands.
	RecvState() RecvState
	// Deliver completes the receive with n bytes in b, or with err when n
	// is 0: io.EOF for the peer's graceful close, ErrCanceled once the
	// connection is closed, else the system's error. b is the user's from
	// then on (see Buf). It reports whether the receive goes on.
	Deliver(b *Buf, n int, err error) bool
	// SendBatch appends the unwritten bytes of the queued messages to iov,
	// at most max of them, and marks them in flight: they stay valid until
	// SendDone. It may append nothing, the queue having emptied since
	// Flush (a write deadline fails what no write has taken): the engine
	// then reports SendDone(0, nil), no failure of the socket's.
	SendBatch(iov [][]byte, max int) [][]byte
	// SendDone reports a write of the last batch that wrote n bytes and
	// ended with err, and whether more is queued: then the engine goes on
	// with another SendBatch.
	SendDone(n int, err error) (more bool)
	// Broken returns the error of a failed write that broke the
	// connection, or nil: the engine shuts the socket down so that the
	// receive ends.
	Broken() error
}

// RecvState is where a connection's receive stands.
type RecvState struct {
	Armed bool // a receive is in progress
	Multi bool // it goes on after each completion
	Ready bool // the engine may deliver now: armed, and for a multishot receive its last completion was released
	// Full says the owner holds all the results it may of a multishot
	// receive (Deliver returned false with the receive still armed): an
	// engine whose receive runs ahead of Ready stops it, delivering what
	// is already on its way, and starts it again at the owner's next
	// Conn.Recv.
	Full   bool
	Closed bool // the connection is closed: the engine ends an armed receive with ErrCanceled as soon as it is ready
}

// Config is what an engine is handed when it opens.
type Config struct {
	Port           Port
	Logger         *slog.Logger // never nil
	Concurrency    int          // the port's concurrency cap
	RecvBufferSize int          // bytes in a receive buffer

	// FlushDelay is the longest a write waits for a running worker's
	// Submit (see FlushGate); negative holds nothing back.
	FlushDelay time.Duration

	// Kernel-ring sizes (uring); zero means the engine's default.
	Rings       int // rings sharing the connections
	RingEntries int // submission queue entries of a ring
	RecvBuffers int // provided receive buffers of a ring

	// Faults, set only by tests, makes chosen system calls fail (see
	// Faults); nil in production.
	Faults *Faults
}

// Stats are an engine's counters, for metrics and tests. An engine leaves
// at zero what it does not count.
type Stats struct {
	Writes    uint64 // write system calls started (sendmsg, writev, WSASend)
	Wakes     uint64 // wake-ups of the engine's own threads or pollers
	Loops     int    // the engine's event loops (rings, pollers)
	LoopConns []int  // connections held by each loop, where they are dealt to loops
	Reaped    uint64 // completions taken from the kernel (io_uring CQEs)
	Overflows uint64 // times the kernel's completion queue overflowed onto its overflow list
	Starved   uint64 // receives that found every provided buffer out (-ENOBUFS)
}

// Errors an engine reports; package cport exports them under the same names.
var (
	// ErrCanceled ends an operation whose socket was closed. Like every
	// error of a closed socket or port, errors.Is matches it to
	// net.ErrClosed, as Go's net reports a closed connection.
	ErrCanceled error = &closedError{"cport: operation canceled: socket closed"}
	// ErrClosed is the error of a call on a closed port, listener or
	// connection; errors.Is matches it to net.ErrClosed.
	ErrClosed error = &closedError{"cport: use of closed port or socket"}
	// ErrUnavailable wraps an engine's refusal to open on this system.
	ErrUnavailable = errors.New("cport: backend unavailable")
	// ErrUnsupported wraps a request for a feature the engine lacks.
	ErrUnsupported = errors.New("cport: not supported by this backend")
)

// closedError is an error of a closed socket or port, which errors.Is also
// matches to net.ErrClosed.
type closedError struct{ s string }

func (e *closedError) Error() string        { return e.s }
func (e *closedError) Is(target error) bool { return target == net.ErrClosed }

// Buf is a receive buffer: B, of Config.RecvBufferSize bytes, and the
// engine's name for it, where it has one (a provided-buffer ring's id, 0 or
// more; -1 marks a copy package cport made, which no engine sees).
// Lent is package cport's: the generation of the completion that holds the
// buffer, zero while the engine does; engines leave it alone.
type Buf struct {
	B    []byte
	ID   int32
	Lent atomic.Uint32
}
