// Command nbiopeer is the chat relay of PROTOCOL.md on nbio
// (github.com/lesismal/nbio), written the way nbio is meant to be used: an
// Engine whose pollers read every connection and call OnData, with no
// goroutine per connection, and Conn.Write, which is safe from any
// goroutine: nbio writes at once and queues what the socket did not take,
// writing it when the socket drains, and closes a connection whose queue
// would pass Config.MaxWriteBufferSize, set to --send-queue (slow consumer).
//
// The connections are spread over as many shards as pollers, each with a
// fan-out goroutine. OnData cuts whole messages (keeping a partial one in
// the connection's session until the rest arrives) and appends them, as one
// run of bytes, to the pending buffer of every shard; each shard's
// goroutine writes everything pending to each of its connections with one
// Conn.Write. While it writes, more messages gather, and the next round
// carries them all: one write per connection per round, not per message
// (coalescing; the cost of a loopback write is mostly per call). Writing
// from OnData instead, one write per connection per read, costs three
// times as much CPU per delivery at 1,000 clients.
//
// Usage:
//
//	nbiopeer [--addr A] [--framing frame|line] [--max-message N] [--send-queue N] [--workers N] [--mode relay|echo]
package main

import (
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"cport.dev/cport/bench/internal/peer"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
)

const name = "nbiopeer"

func main() {
	o := peer.Parse(name, false)
	pollers := o.Workers
	if pollers <= 0 {
		pollers = runtime.GOMAXPROCS(0)
	}
	logging.SetLevel(logging.LevelError)
	var bound net.Addr // the address the listener got (with --addr :0, the port the kernel chose)
	eng := nbio.NewEngine(nbio.Config{
		Network:            "tcp",
		Addrs:              []string{o.Addr},
		NPoller:            pollers,
		MaxWriteBufferSize: o.SendQueue,
		Listen: func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err == nil {
				bound = ln.Addr()
			}
			return ln, err
		},
	})
	if o.Echo {
		eng.OnData(func(c *nbio.Conn, data []byte) { _, _ = c.Write(data) })
	} else {
		s := newServer(o, pollers)
		eng.OnOpen(s.open)
		eng.OnClose(s.close)
		eng.OnData(s.data)
	}
	if err := eng.Start(); err != nil {
		peer.Fatal(name, err)
	}
	peer.Listening(name, bound.String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	eng.Stop()
}

// A server is the relay.
type server struct {
	opts   peer.Options
	shards []*shard
	next   atomic.Uint32 // round robin of new connections over shards
}

// A shard is a share of the connections and the goroutine that writes to
// them.
type shard struct {
	// mu guards the fields below.
	mu      sync.Mutex
	conns   []*nbio.Conn
	pending []byte // whole messages for every connection of the shard
	wake    chan struct{}
}

// A session is what the relay keeps per connection.
type session struct {
	shard   *shard
	idx     int    // in shard.conns, guarded by shard.mu; -1 once removed
	partial []byte // the start of a message, owned by the connection's poller
}

func newServer(o peer.Options, shards int) *server {
	s := &server{opts: o}
	for range shards {
		sh := &shard{wake: make(chan struct{}, 1)}
		s.shards = append(s.shards, sh)
		go sh.run()
	}
	return s
}

func (s *server) open(c *nbio.Conn) {
	sh := s.shards[int(s.next.Add(1))%len(s.shards)]
	ss := &session{shard: sh}
	// OnOpen runs on the listener's goroutine, OnData on a poller's, and
	// OnClose on another: the connection's lock orders the session's
	// hand-over (epoll does too, but the race detector cannot see it).
	c.Lock()
	c.SetSession(ss)
	c.Unlock()
	sh.mu.Lock()
	ss.idx = len(sh.conns)
	sh.conns = append(sh.conns, c)
	sh.mu.Unlock()
}

// sessionOf returns c's session, or nil.
func sessionOf(c *nbio.Conn) *session {
	c.Lock()
	ss, _ := c.Session().(*session)
	c.Unlock()
	return ss
}

func (s *server) close(c *nbio.Conn, _ error) {
	ss := sessionOf(c)
	if ss == nil {
		return
	}
	sh := ss.shard
	sh.mu.Lock()
	if ss.idx >= 0 {
		last := sh.conns[len(sh.conns)-1]
		sh.conns[ss.idx] = last
		last.Session().(*session).idx = ss.idx
		sh.conns[len(sh.conns)-1] = nil
		sh.conns = sh.conns[:len(sh.conns)-1]
		ss.idx = -1
	}
	sh.mu.Unlock()
}

func (s *server) data(c *nbio.Conn, data []byte) {
	ss := sessionOf(c)
	if ss == nil {
		return
	}
	b := data
	if len(ss.partial) > 0 {
		ss.partial = append(ss.partial, data...)
		b = ss.partial
	}
	whole, err := s.opts.Framing.Whole(b, s.opts.MaxMessage)
	if whole > 0 {
		for _, sh := range s.shards {
			sh.queue(b[:whole])
		}
	}
	if err != nil {
		_ = c.Close()
		return
	}
	rest := b[whole:]
	switch {
	case len(rest) == 0:
		ss.partial = ss.partial[:0]
	case len(ss.partial) > 0:
		ss.partial = ss.partial[:copy(ss.partial, rest)]
	default:
		ss.partial = append(ss.partial[:0], rest...) // data is the poller's buffer
	}
}

// queue appends b, whole messages, to what the shard's goroutine writes
// next.
func (sh *shard) queue(b []byte) {
	sh.mu.Lock()
	wasEmpty := len(sh.pending) == 0
	sh.pending = append(sh.pending, b...)
	sh.mu.Unlock()
	if wasEmpty {
		select {
		case sh.wake <- struct{}{}:
		default:
		}
	}
}

// run writes what is pending to every connection of the shard, a round at
// a time. It iterates over a copy of the list: a write that overflows a
// send queue closes that connection, and OnClose, run at once, takes the
// lock.
func (sh *shard) run() {
	var batch, spare []byte
	var conns []*nbio.Conn
	for range sh.wake {
		for {
			sh.mu.Lock()
			if len(sh.pending) == 0 {
				sh.mu.Unlock()
				break
			}
			batch, sh.pending = sh.pending, spare[:0]
			conns = append(conns[:0], sh.conns...)
			sh.mu.Unlock()
			for _, c := range conns {
				_, _ = c.Write(batch)
			}
			clear(conns)
			spare = batch[:0]
			if cap(spare) > 1<<20 { // a burst: do not keep its memory
				spare = nil
			}
		}
	}
}
