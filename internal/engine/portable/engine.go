// Package portable is the engine on Go's net package, whose runtime poller
// is itself epoll, kqueue or IOCP underneath: a goroutine per connection
// waiting for data turns each read into a receive completion, and a
// goroutine per write burst turns each writev into a send completion.
//
// It spends a goroutine per connection and that goroutine's stack, a
// goroutine per connection with a write in progress, one per listener, and
// one per dial in progress: a net.Dialer, whose context Close cancels.
// It is the baseline the other engines are measured against, and runs
// everywhere.
//
// Adopted sockets (Linux): AdoptConn and AdoptListener check a duplicate
// of the caller's descriptor (sockopt.Adopt) and give it to
// net.FileConn or net.FileListener, which take a duplicate of their own;
// Detach returns the File of the net.Conn, a duplicate, after which the
// port closes the connection. Elsewhere (Windows: no net.FileConn) they
// are an error matching engine.ErrUnsupported that names the engine.
//
// # Ownership and locks
//
// A listener's accepting goroutine owns its net.Listener's Accept; a
// connection's reading goroutine owns its reads, and the goroutine writing
// (one at a time: the owner's send queue starts a write only when none is
// in flight) owns iov and nb. The wake channels carry no data, only "look
// again". Engine.mu guards closed and the WaitGroup's Add against Close.
// The owners' methods are called with no lock of the engine's held.
//
// # Buffers the kernel holds
//
// None past a system call: Go's net package reads and writes synchronously
// from the calling goroutine's point of view. Receive buffers come from a
// BufPool, are the user's from Deliver until Release, and go back to the
// pool there. On Unix a buffer is taken only once the socket has data (the
// read(2) runs inside RawConn.Read, see read_unix.go), so a silent
// connection holds none; elsewhere its blocked Read holds one (read.go).
//
// # Faults
//
// With Config.Faults set (tests only), the engine asks it before each call
// into Go's net package that stands for a system call: CallAccept before
// Listener.Accept, CallRecv before each read(2) (read_unix.go) or
// net.Conn.Read (read.go), CallSend before the write of a batch,
// CallShutdown before CloseWrite, CallClose after each Close of a socket
// that was open (the close is made; its error, like a real one, changes
// nothing). It issues no CallPoll: Go's runtime registers its sockets. An
// injected errno comes wrapped as Go's net wraps a real one (faults.go),
// and takes the real one's path: what Go's net retries inside (EINTR,
// EAGAIN) is retried, a transient accept error is skipped, a resource one
// pauses accepting, a failed read ends the receive, a failed write or
// shutdown breaks the connection.
package portable

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cport.dev/cport/internal/engine"
	"cport.dev/cport/internal/sockopt"
)

// Engine is the portable engine of one port.
type Engine struct {
	bufs   *engine.BufPool
	faults *engine.Faults // nil but in tests
	done   chan struct{}  // closed by Close: every goroutine returns
	writes atomic.Uint64  // writev calls
	// ctx is canceled by Close: the dials in progress end.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed, the Add of wg and dials
	closed bool
	wg     sync.WaitGroup
	// dials holds the cancel function of each dial in progress's context
	// (a child of ctx), for CancelDial.
	dials map[engine.DialOwner]context.CancelFunc
}

type listener struct {
	e     *Engine
	ln    net.Listener
	owner engine.ListenerOwner
	once  sync.Once
	wake  chan struct{} // capacity 1: an accept was started
}

type conn struct {
	e     *Engine
	nc    net.Conn
	owner engine.ConnOwner // set before the connection is published
	once  sync.Once        // starts the reading goroutine
	wake  chan struct{}    // capacity 1: the receive's state changed
	shut  atomic.Bool      // Shutdown was called: a closed socket at the end of stream is no reset
	rc    syscall.RawConn  // nc's descriptor, for reads that hold no buffer while waiting (see read)
	// broken is the error of a failed shutdown, which closed the socket:
	// the receive ends with it rather than with ErrCanceled.
	broken atomic.Pointer[error]
	// Owned by the goroutine writing, one at a time.
	iov [][]byte
	nb  net.Buffers
}

// Open starts a portable engine. It never fails.
func Open(cfg engine.Config) (engine.Engine, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{bufs: engine.NewBufPool(cfg.RecvBufferSize), faults: cfg.Faults, done: make(chan struct{}), ctx: ctx, cancel: cancel}, nil
}

// spawn runs f in a goroutine that Close waits for, unless closed.
func (e *Engine) spawn(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Listen opens a listening socket with net.Listen.
func (e *Engine) Listen(network, address string, owner engine.ListenerOwner) (engine.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &listener{e: e, ln: ln, owner: owner, wake: make(chan struct{}, 1)}, nil
}

func (l *listener) Addr() net.Addr { return l.ln.Addr() }

func (l *listener) Accept() {
	l.once.Do(func() { l.e.spawn(l.acceptLoop) })
	poke(l.wake)
}

func (l *listener) acceptLoop() {
	var pause time.Duration
	for {
		select {
		case <-l.wake:
		case <-l.e.done:
			l.endAccept()
			return
		}
		for goOn := true; goOn; {
			var (
				nc  net.Conn
				err error
			)
			if errno := l.e.faults.Fail(engine.CallAccept); errno != 0 {
				err = l.acceptError(errno)
			} else {
				nc, err = l.ln.Accept()
			}
			if errors.Is(err, net.ErrClosed) {
				l.owner.AcceptFailed(engine.ErrCanceled, true)
				return
			}
			if err != nil && transientAccept(err) {
				continue // the connection is gone, or the call was interrupted: nobody waits for it
			}
			if err != nil {
				// EMFILE and the like: report, pause so as not to spin, go on.
				goOn = l.owner.AcceptFailed(err, false)
				pause = engine.NextAcceptPause(pause)
				select {
				case <-time.After(pause):
				case <-l.e.done:
					l.endAccept()
					return
				}
				continue
			}
			pause = 0
			c := &conn{e: l.e, nc: nc, wake: make(chan struct{}, 1)}
			if sc, ok := nc.(syscall.Conn); ok {
				c.rc, _ = sc.SyscallConn()
			}
			c.owner = l.owner.NewConn(c, nc.LocalAddr(), nc.RemoteAddr())
			goOn = l.owner.Accepted(c.owner)
		}
	}
}

// endAccept ends an accept still in progress as the engine closes: its
// start may have poked the accepting goroutine just as the engine's done
// was closed, and select picked done (under -race, NetListener.Accept
// then waited for ever).
func (l *listener) endAccept() {
	if want, _ := l.owner.AcceptState(); want {
		l.owner.AcceptFailed(engine.ErrCanceled, true)
	}
}

// Close closes the listening socket; the accepting goroutine sees it.
func (l *listener) Close() {
	if err := l.ln.Close(); !errors.Is(err, net.ErrClosed) {
		l.e.faults.Fail(engine.CallClose) // the socket is closed either way
	}
}

// Dial connects with a net.Dialer in a goroutine of its own, which Close
// cancels and waits for.
func (e *Engine) Dial(raddr net.Addr, owner engine.DialOwner) error {
	network := raddr.Network() // "tcp" or "unix"
	ctx, cancel := context.WithCancel(e.ctx)
	e.mu.Lock()
	if e.dials == nil {
		e.dials = make(map[engine.DialOwner]context.CancelFunc)
	}
	e.dials[owner] = cancel
	e.mu.Unlock()
	if !e.spawn(func() { e.dial(ctx, network, raddr, owner) }) {
		e.forgetDial(owner)
		return engine.ErrClosed
	}
	return nil
}

// CancelDial cancels the context of owner's dial, if it is in progress.
func (e *Engine) CancelDial(owner engine.DialOwner) {
	e.mu.Lock()
	cancel := e.dials[owner]
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// forgetDial unlists owner's dial and lets go of its context.
func (e *Engine) forgetDial(owner engine.DialOwner) {
	e.mu.Lock()
	cancel := e.dials[owner]
	delete(e.dials, owner)
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (e *Engine) dial(ctx context.Context, network string, raddr net.Addr, owner engine.DialOwner) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, raddr.String())
	canceled := ctx.Err() != nil
	e.forgetDial(owner) // (which cancels ctx: looked at before)
	if err != nil {
		if canceled {
			owner.Failed(engine.ErrCanceled) // Close, or CancelDial
			return
		}
		// The system's error, without net's "dial tcp ADDR: ", which
		// package cport says its own way.
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		owner.Failed(sockopt.NetError(err))
		return
	}
	c := &conn{e: e, nc: nc, wake: make(chan struct{}, 1)}
	if sc, ok := nc.(syscall.Conn); ok {
		c.rc, _ = sc.SyscallConn()
	}
	c.owner = owner.NewConn(c, nc.LocalAddr(), nc.RemoteAddr())
	owner.Connected(c.owner)
}

func (c *conn) Recv() {
	c.once.Do(func() { c.e.spawn(c.readLoop) })
	poke(c.wake)
}

func (c *conn) readLoop() {
	var readErr error // an error that came with data, reported next
	for {
		select {
		case <-c.wake:
		case <-c.e.done:
			return
		}
		for {
			st := c.owner.RecvState()
			if !st.Ready {
				if st.Closed && !st.Armed {
					return
				}
				break // wait for a Recv or a Release
			}
			if st.Closed {
				c.owner.Deliver(nil, 0, engine.ErrCanceled)
				return
			}
			if readErr != nil {
				c.owner.Deliver(nil, 0, readErr)
				readErr = nil
				continue
			}
			b, n, err := c.read()
			if n > 0 {
				readErr = err
				c.owner.Deliver(b, n, nil)
				continue
			}
			switch err {
			case nil:
				continue // a zero-byte read without an error: read again
			case engine.ErrCanceled:
				if brk := c.broken.Load(); brk != nil {
					err = *brk // a failed shutdown closed the socket
				}
			case io.EOF:
				// After our own FIN the socket is closed (TCP_CLOSE)
				// once the peer's comes: no sign of a reset then.
				if !c.shut.Load() {
					err = eofOrReset(c.nc)
				}
			}
			c.owner.Deliver(nil, 0, sockopt.NetError(err))
		}
	}
}

func (c *conn) Release(b *engine.Buf) {
	c.e.bufs.Put(b)
	poke(c.wake)
}

func (c *conn) Flush() {
	if !c.e.spawn(c.writeLoop) {
		c.owner.SendDone(0, engine.ErrCanceled)
	}
}

// writeLoop writes the send queue until it is empty, everything waiting in
// one writev each time round.
func (c *conn) writeLoop() {
	for {
		c.iov = c.owner.SendBatch(c.iov[:0], 1024)
		c.nb = c.iov
		c.e.writes.Add(1)
		var (
			n   int64
			err error
		)
		if errno := c.e.faults.Fail(engine.CallSend); errno != 0 && !retriedByNet(errno) {
			err = c.opError(writevCall, writevCall, errno)
		} else {
			n, err = c.nb.WriteTo(c.nc)
		}
		clear(c.iov) // hold no message past SendDone
		more := c.owner.SendDone(int(n), sockopt.NetError(err))
		if err != nil {
			c.closeSocket() // break the connection: the receive ends with the error
		}
		if !more {
			return
		}
	}
}

// Shutdown shuts the writing side down; Go's net orders it with Close. If
// the shutdown fails (the connection was reset, or the kernel lacks
// memory), the peer would wait for an end of stream that never comes: the
// socket is closed, and the receive ends with the shutdown's error.
func (c *conn) Shutdown() {
	c.shut.Store(true)
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	var err error
	if errno := c.e.faults.Fail(engine.CallShutdown); errno != 0 && !retriedByNet(errno) {
		err = c.opError("close", "shutdown", errno)
	} else {
		err = cw.CloseWrite()
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		return // done, or closed by Close meanwhile: nothing to break
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se // "shutdown: <errno>", not net's "close ...: shutdown: <errno>"
	}
	c.broken.Store(&err)
	c.closeSocket()
}

// closeSocket closes the socket. Go's net closes the descriptor once and
// makes any later Close an error of its own (net.ErrClosed) with no system
// call; a failure of the close itself, real or injected, changes nothing:
// the descriptor is gone either way, and the reading goroutine sees it.
func (c *conn) closeSocket() {
	if err := c.nc.Close(); !errors.Is(err, net.ErrClosed) {
		c.e.faults.Fail(engine.CallClose)
	}
}

// Close closes the connection, with a reset if asked: SetLinger(0) makes
// the close discard unsent data and send an RST.
func (c *conn) Close(reset bool) {
	if reset {
		if tc, ok := c.nc.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	c.closeSocket()
	poke(c.wake)
}

// Submit does nothing: every write starts at once in its own goroutine.
func (e *Engine) Submit() {}

// Stats returns the engine's counters.
func (e *Engine) Stats() engine.Stats { return engine.Stats{Writes: e.writes.Load()} }

// Close stops the engine's goroutines and waits for them.
func (e *Engine) Close() {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.done)
		e.cancel()
	}
	e.mu.Unlock()
	e.wg.Wait()
}
