package cport

import (
	"log/slog"
	"runtime"
	"time"

	"cport.dev/cport/internal/engine"
)

// Config configures a Port. The zero value is ready to use: every field's
// zero means its default.
type Config struct {
	// Backend names the engine: "" or "auto" picks the best one this system
	// offers; Backends lists the names of this build.
	Backend string

	// Handler, if set, runs every completion at once on the goroutine
	// that produced it, instead of queuing it for workers: a
	// run-to-completion port. A receive is handled on the engine's
	// goroutine that read it (the io_uring ring's loop, an epoll poller, an
	// IOCP waiter, a portable reader), and the reply it sends goes out from
	// there, with no other goroutine woken: the fast path for
	// request-response. The port then has no queue: Worker.Wait returns
	// ErrHandler, Concurrency is ignored, and Port.Post runs the handler on
	// its caller's goroutine.
	//
	// The handler must not block: while it runs, its engine goroutine
	// serves none of its other connections. It may call any method of the
	// port, its connections and listeners (but Port.Close, which waits for
	// the engine's goroutines: call it from another), and it may keep a receive
	// completion (the value: c is the handler's own copy, and passing it
	// by value costs no allocation) past its return, the connection not
	// read meanwhile, and release it later from any goroutine. Handlers
	// run concurrently, one per engine goroutine, and a Release may run
	// the connection's next receive completion before it returns: send
	// what a receive calls for before releasing it, as with workers.
	Handler func(c Completion)

	// Concurrency caps how many workers run completions at once, like the
	// NumberOfConcurrentThreads of CreateIoCompletionPort: a worker counts as
	// running from the moment its Wait returns until its next Wait (or
	// Close). Default GOMAXPROCS.
	Concurrency int

	// RecvBufferSize is the size of the buffers receives are read into, the
	// most one receive completion can carry. Default 16 KiB. A datagram
	// socket's receive (PacketConn) carries 64 bytes less.
	RecvBufferSize int

	// Logger receives the port's own diagnostics (the backend chosen, and
	// why). Nil discards them.
	Logger *slog.Logger

	// CloseTimeout bounds how long Conn.Close goes on writing a
	// connection's queued messages before it resets the connection.
	// Default 10s.
	CloseTimeout time.Duration

	// FlushDelay bounds how long the sends a running worker queues wait
	// for its next Wait, so that each connection's queued messages go out
	// in one system call (uring and epoll; the others write at once).
	// Default 500µs; negative holds nothing back, each send starting its
	// write at once.
	FlushDelay time.Duration

	// The uring engine's rings; the other engines ignore these.
	//
	// Rings is how many io_uring instances share the connections, each
	// with a thread of its own. Default: the environment variable
	// CPORT_URING_RINGS if set, else one per four CPUs, at most four.
	Rings int
	// RingEntries is each ring's submission queue size, a power of two
	// (the completion queue is four times larger). Default 4096.
	RingEntries int
	// RecvBuffers is how many receive buffers of RecvBufferSize each ring
	// provides to the kernel, a power of two up to 32768: a connection
	// takes one only while data it received waits to be released. When
	// all are taken, receives pause until buffers come back. Default 1024.
	RecvBuffers int

	// faults makes the engine's system calls fail on demand; set only by
	// the package's tests (export_test.go), nil otherwise.
	faults *engine.Faults
}

// Default values of Config.
const (
	DefaultRecvBufferSize = 16 << 10
	DefaultCloseTimeout   = 10 * time.Second
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Backend == "" {
		c.Backend = "auto"
	}
	if c.Concurrency <= 0 {
		c.Concurrency = runtime.GOMAXPROCS(0)
	}
	if c.RecvBufferSize <= 0 {
		c.RecvBufferSize = DefaultRecvBufferSize
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
