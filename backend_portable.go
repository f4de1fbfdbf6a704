package cport

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// portable is the engine on Go's net package, whose runtime poller is itself
// epoll, kqueue or IOCP underneath. It spends a goroutine per connection
// blocked in Read, and that goroutine's buffer; a goroutine per connection
// with a write in progress; and one per listener. It is the baseline the
// other engines are measured against, and runs everywhere.
type portable struct {
	p    *Port
	done chan struct{} // closed by close: every goroutine returns

	mu     sync.Mutex // guards closed and the Add of wg
	closed bool
	wg     sync.WaitGroup
}

type portableListener struct {
	ln   net.Listener
	once sync.Once
	wake chan struct{} // capacity 1: an accept was started
}

type portableConn struct {
	nc   net.Conn
	once sync.Once     // starts the reading goroutine
	wake chan struct{} // capacity 1: the receive's state changed
	// Owned by the goroutine writing, one at a time (Conn.sending).
	iov [][]byte
	nb  net.Buffers
}

func openPortable(p *Port) (backend, error) {
	return &portable{p: p, done: make(chan struct{})}, nil
}

// spawn runs f in a goroutine that close waits for, unless closed.
func (be *portable) spawn(f func()) bool {
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.closed {
		return false
	}
	be.wg.Add(1)
	go func() {
		defer be.wg.Done()
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

func (be *portable) listen(l *Listener, network, address string) error {
	ln, err := net.Listen(network, address)
	if err != nil {
		return &OpError{Op: "listen", Backend: "portable", Err: err}
	}
	l.sys = &portableListener{ln: ln, wake: make(chan struct{}, 1)}
	l.addr = ln.Addr()
	return nil
}

func (be *portable) accept(l *Listener) error {
	pl := l.sys.(*portableListener)
	pl.once.Do(func() { be.spawn(func() { be.acceptLoop(l, pl) }) })
	poke(pl.wake)
	return nil
}

func (be *portable) acceptLoop(l *Listener, pl *portableListener) {
	var pause time.Duration
	for {
		select {
		case <-pl.wake:
		case <-be.done:
			return
		}
		for goOn := true; goOn; {
			nc, err := pl.ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				l.acceptFailed(ErrCanceled, true)
				return
			}
			if err != nil {
				// EMFILE and the like: report, pause so as not to spin, go on.
				goOn = l.acceptFailed(&OpError{Op: "accept", Backend: "portable", Addr: l.addr, Err: err}, false)
				pause = nextAcceptPause(pause)
				select {
				case <-time.After(pause):
				case <-be.done:
					return
				}
				continue
			}
			pause = 0
			pc := &portableConn{nc: nc, wake: make(chan struct{}, 1)}
			goOn = l.accepted(newConn(be.p, pc, nc.LocalAddr(), nc.RemoteAddr()))
		}
	}
}

func (be *portable) closeListener(l *Listener) {
	l.sys.(*portableListener).ln.Close()
}

func (be *portable) recv(c *Conn) error {
	pc := c.sys.(*portableConn)
	pc.once.Do(func() { be.spawn(func() { be.readLoop(c, pc) }) })
	poke(pc.wake)
	return nil
}

func (be *portable) readLoop(c *Conn, pc *portableConn) {
	var readErr error // an error that came with data, reported next
	for {
		select {
		case <-pc.wake:
		case <-be.done:
			return
		}
		for {
			armed, ready, closed := c.recvState()
			if !ready {
				if closed && !armed {
					return
				}
				break // wait for a Recv or a Release
			}
			if closed {
				c.deliverRecv(nil, 0, ErrCanceled)
				return
			}
			if readErr != nil {
				c.deliverRecv(nil, 0, readErr)
				readErr = nil
				continue
			}
			b := be.p.recv.get()
			n, err := pc.nc.Read(b.b)
			if n > 0 {
				readErr = err
				c.deliverRecv(b, n, nil)
				continue
			}
			be.p.recv.put(b)
			switch err {
			case nil:
				continue // a zero-byte read without an error: read again
			case io.EOF:
				err = netConnEOF(pc.nc)
			}
			c.deliverRecv(nil, 0, netError(err))
		}
	}
}

func (be *portable) recvReleased(c *Conn, b *recvBuf) {
	be.p.recv.put(b)
	poke(c.sys.(*portableConn).wake)
}

func (be *portable) flush(c *Conn) {
	pc := c.sys.(*portableConn)
	if !be.spawn(func() { be.writeLoop(c, pc) }) {
		c.sendDone(0, ErrCanceled)
	}
}

// writeLoop writes c's send queue until it is empty, everything waiting in
// one writev each time round.
func (be *portable) writeLoop(c *Conn, pc *portableConn) {
	for {
		pc.iov = c.sendBatch(pc.iov[:0], 1024)
		pc.nb = pc.iov
		n, err := pc.nb.WriteTo(pc.nc)
		more := c.sendDone(int(n), netError(err))
		if err != nil {
			pc.nc.Close() // break the connection: the receive ends with the error
		}
		if !more {
			return
		}
	}
}

func (be *portable) submit() {} // every write started at once in its own goroutine

func (be *portable) closeConn(c *Conn) {
	pc := c.sys.(*portableConn)
	pc.nc.Close()
	poke(pc.wake)
}

func (be *portable) close() {
	be.mu.Lock()
	if !be.closed {
		be.closed = true
		close(be.done)
	}
	be.mu.Unlock()
	be.wg.Wait()
}
