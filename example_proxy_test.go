package cport_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"

	"cport.dev/cport"
)

// A TCP proxy on a run-to-completion port: each connection accepted is
// relayed to a connection dialed to upstream, both ways. A pair of
// connections is the value of both (SetValue). A chunk received on one
// side is sent on the other, and its receive completion is kept until the
// send completes: the side is not read meanwhile, so a slow reader slows
// its writer down (TCP's backpressure) and the proxy holds one buffer per
// direction. An end of stream is passed on as a half-close (CloseWrite);
// the pair is closed once both directions have ended.
type proxy struct {
	port     *cport.Port
	upstream string

	mu      sync.Mutex
	pending map[uint64]*cport.Conn // dials in progress, by tag: the client waiting
	next    uint64
}

// pair is a client and its upstream connection.
type pair struct {
	mu    sync.Mutex
	conns [2]*cport.Conn      // 0: the client, 1: upstream
	held  [2]cport.Completion // the receive of side i kept until its chunk is written to the other
	ended [2]bool             // side i's stream ended (or failed)
}

// side returns which side of p c is.
func (p *pair) side(c *cport.Conn) int {
	if p.conns[1] == c {
		return 1
	}
	return 0
}

func (x *proxy) handle(c cport.Completion) {
	switch c.Op {
	case cport.OpAccept:
		if c.Err != nil {
			return
		}
		x.mu.Lock()
		x.next++
		tag := x.next
		x.pending[tag] = c.Conn
		x.mu.Unlock()
		if err := x.port.Dial("tcp", x.upstream, 0, tag); err != nil {
			c.Conn.Abort()
		}
	case cport.OpDial:
		x.mu.Lock()
		client := x.pending[c.Tag]
		delete(x.pending, c.Tag)
		x.mu.Unlock()
		if c.Err != nil {
			client.Abort() // upstream refused: so is the client
			return
		}
		p := &pair{conns: [2]*cport.Conn{client, c.Conn}}
		for _, conn := range p.conns {
			conn.SetValue(p)
		}
		// Both values first: a receive may complete, and its chunk be
		// sent on the other side, before RecvMulti returns.
		for _, conn := range p.conns {
			conn.RecvMulti(0)
		}
	case cport.OpRecv:
		p := c.Conn.Value().(*pair)
		i := p.side(c.Conn)
		other := p.conns[1-i]
		if c.Err != nil { // the end of the stream, or a failure
			c.Release()
			if !errors.Is(c.Err, io.EOF) {
				p.conns[0].Abort()
				p.conns[1].Abort()
				return
			}
			p.mu.Lock()
			p.ended[i] = true
			both := p.ended[0] && p.ended[1]
			p.mu.Unlock()
			other.CloseWrite() // after what was sent: the peer reads the end
			if both {
				p.conns[0].Close()
				p.conns[1].Close()
			}
			return
		}
		m := cport.MsgOf(c.Buf)
		p.mu.Lock()
		p.held[i] = c // released once the chunk is written
		p.mu.Unlock()
		if err := other.Send(m, 0); err != nil {
			p.conns[0].Abort()
			p.conns[1].Abort()
			p.release(i)
		}
		m.Release()
	case cport.OpSend:
		p := c.Conn.Value().(*pair)
		p.release(1 - p.side(c.Conn)) // the side whose chunk it was may go on
		if c.Err != nil {
			p.conns[0].Abort()
			p.conns[1].Abort()
		}
	}
}

// release gives back side i's kept receive completion: its next chunk may
// come.
func (p *pair) release(i int) {
	p.mu.Lock()
	c := p.held[i]
	p.held[i] = cport.Completion{}
	p.mu.Unlock()
	if c.Op != 0 {
		c.Release()
	}
}

// startProxy runs a proxy to upstream on a new port, and returns its
// address and the port (the caller closes it).
func startProxy(upstream string) (string, *cport.Port, error) {
	x := &proxy{upstream: upstream, pending: map[uint64]*cport.Conn{}}
	port, err := cport.Open(cport.Config{Handler: x.handle})
	if err != nil {
		return "", nil, err
	}
	x.port = port
	ln, err := port.Listen("tcp", "127.0.0.1:0", 0)
	if err == nil {
		err = ln.AcceptMulti(0)
	}
	if err != nil {
		port.Close()
		return "", nil, err
	}
	return ln.Addr().String(), port, nil
}

// A TCP proxy in front of an echo server: a line goes through the proxy
// to the server and back.
func Example_proxy() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() { // upstream: an echo of one connection
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := bufio.NewReader(c)
		for {
			line, err := b.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprint(c, line)
		}
	}()

	addr, port, err := startProxy(ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, "through the proxy")
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print("echo: ", reply)
	// Output: echo: through the proxy
}
