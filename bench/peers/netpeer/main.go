// Command netpeer is the chat relay of PROTOCOL.md on Go's net package, the
// way a good Go programmer writes a broadcast server: a reader goroutine and
// a writer goroutine per connection. The reader cuts whole messages and
// appends them, as one run of bytes, to every client's outbound buffer; each
// writer drains its buffer in one Write, so that everything queued for a
// client while its previous write was in progress goes out together
// (coalescing: the cost of a loopback write is mostly per call, not per
// byte).
//
// Usage:
//
//	netpeer [--addr A] [--framing frame|line] [--max-message N] [--send-queue N] [--mode relay|echo]
package main

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"

	"cport.dev/cport/bench/internal/peer"
)

const name = "netpeer"

func main() {
	o := peer.Parse(name, false)
	if o.Workers > 0 {
		runtime.GOMAXPROCS(o.Workers)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		peer.Fatal(name, err)
	}
	peer.Listening(name, ln.Addr().String())
	s := &server{opts: o}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				peer.Fatal(name, err)
			}
			// EMFILE and the like: the connection waits in the queue
			// until a descriptor is free.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if o.Echo {
			go echo(c)
			continue
		}
		s.serve(c)
	}
}

// A server is the registry of clients.
type server struct {
	opts peer.Options

	// mu guards clients and every client's idx. A relay holds it for
	// reading while it queues on every client: queuing never blocks.
	mu      sync.RWMutex
	clients []*client
}

// A client is one connection.
type client struct {
	s    *server
	conn net.Conn
	idx  int // index in server.clients, guarded by server.mu

	// mu guards the fields below, shared by the relaying readers and
	// this client's writer.
	mu       sync.Mutex
	out      []byte // queued, not yet taken by the writer
	inflight int    // bytes the writer took and is writing
	closed   bool

	wake chan struct{} // capacity 1: out became non-empty
	once sync.Once
	done chan struct{} // closed with the connection
}

func (s *server) serve(conn net.Conn) {
	c := &client{s: s, conn: conn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	c.idx = len(s.clients)
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	go c.write()
	go c.read()
}

// read cuts what arrives into whole messages and relays them, until the
// connection ends. A partial message left at the end is dropped.
func (c *client) read() {
	defer c.s.remove(c)
	defer c.kill()
	o := &c.s.opts
	buf := make([]byte, 4096)
	have := 0
	for {
		n, err := c.conn.Read(buf[have:])
		have += n
		whole, ferr := o.Framing.Whole(buf[:have], o.MaxMessage)
		if whole > 0 {
			c.s.relay(buf[:whole])
			have = copy(buf, buf[whole:have])
		}
		if ferr != nil || err != nil {
			return
		}
		if have == len(buf) { // a message larger than the buffer: grow it
			need := max(o.Framing.Need(buf[:have], o.MaxMessage), 2*len(buf))
			nb := make([]byte, min(need, 4+o.MaxMessage))
			copy(nb, buf[:have])
			buf = nb
		}
	}
}

// relay queues b, whole messages, on every client.
func (s *server) relay(b []byte) {
	s.mu.RLock()
	for _, c := range s.clients {
		c.queue(b, s.opts.SendQueue)
	}
	s.mu.RUnlock()
}

// queue appends b to c's outbound buffer, or disconnects c if that would
// pass limit queued bytes (a slow consumer).
func (c *client) queue(b []byte, limit int) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.out)+c.inflight+len(b) > limit {
		c.mu.Unlock()
		c.kill() // its reader unregisters it
		return
	}
	wasEmpty := len(c.out) == 0
	c.out = append(c.out, b...)
	c.mu.Unlock()
	if wasEmpty {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// write drains the outbound buffer, everything queued in one Write.
func (c *client) write() {
	var spare []byte
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		for {
			c.mu.Lock()
			batch := c.out
			if len(batch) == 0 || c.closed {
				c.mu.Unlock()
				break
			}
			c.out, c.inflight = spare[:0], len(batch)
			c.mu.Unlock()
			if _, err := c.conn.Write(batch); err != nil {
				c.kill()
				return
			}
			c.mu.Lock()
			c.inflight = 0
			c.mu.Unlock()
			spare = batch[:0]
			if cap(spare) > 256<<10 { // a burst: do not keep its memory
				spare = nil
			}
		}
	}
}

// kill closes the connection, which ends its reader and its writer; it is
// idempotent. It takes no server lock: a relay calls it.
func (c *client) kill() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.out = nil
		c.mu.Unlock()
		close(c.done)
		c.conn.Close()
	})
}

// remove unregisters c; its reader calls it on the way out.
func (s *server) remove(c *client) {
	s.mu.Lock()
	last := s.clients[len(s.clients)-1]
	s.clients[c.idx] = last
	last.idx = c.idx
	s.clients[len(s.clients)-1] = nil
	s.clients = s.clients[:len(s.clients)-1]
	s.mu.Unlock()
}

// echo writes back what arrives, as it arrives.
func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
