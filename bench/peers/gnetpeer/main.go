// Command gnetpeer is the chat relay of PROTOCOL.md on gnet v2
// (github.com/panjf2000/gnet/v2), written the way gnet is meant to be used
// for a broadcast server: everything runs on gnet's event loops, and no
// goroutine is spent per connection.
//
// Each event loop keeps the list of its own connections. OnTraffic cuts the
// whole messages out of the inbound buffer and appends them, as one run of
// bytes, to a pending buffer of every event loop; the first append after a
// flush schedules that loop's flush with EventLoop.Execute. gnet runs queued
// tasks after the I/O events of the same epoll_wait round, so a flush
// carries everything that every client sent meanwhile: one write per
// connection per round, whatever the number of messages (coalescing; the
// cost of a loopback write is mostly per call). The flush writes to each
// connection with Conn.Write, from its own event loop: gnet writes at once
// and keeps what the socket did not take in the connection's outbound
// buffer, written when the socket drains. A client whose outbound buffer
// would pass --send-queue is closed (slow consumer).
//
// Usage:
//
//	gnetpeer [--addr A] [--framing frame|line] [--max-message N] [--send-queue N] [--workers N] [--mode relay|echo]
package main

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"sync"

	"cport.dev/cport/bench/internal/peer"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"golang.org/x/sys/unix"
)

const name = "gnetpeer"

func main() {
	o := peer.Parse(name, false)
	loops := o.Workers
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	s := &server{opts: o, loops: make(map[gnet.EventLoop]*loop)}
	var h gnet.EventHandler = s
	if o.Echo {
		h = &echo{}
	}
	err := gnet.Run(booter{h}, "tcp://"+o.Addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(loops),
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogLevel(logging.ErrorLevel),
	)
	if err != nil {
		peer.Fatal(name, err)
	}
}

// booter prints the address the engine listens on (with --addr :0, the
// port the kernel chose) once it is ready.
type booter struct{ gnet.EventHandler }

func (b booter) OnBoot(eng gnet.Engine) gnet.Action {
	addr := "?"
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				addr = net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))
			case *unix.SockaddrInet6:
				addr = net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))
			}
		}
		unix.Close(fd)
	}
	peer.Listening(name, addr)
	return b.EventHandler.OnBoot(eng)
}

// A server is the relay.
type server struct {
	gnet.BuiltinEventEngine
	opts peer.Options

	// mu guards loops, which grows as event loops get their first
	// connection. OnTraffic holds it for reading while it queues.
	mu    sync.RWMutex
	loops map[gnet.EventLoop]*loop
	all   []*loop
}

// A loop is one gnet event loop's share of the relay.
type loop struct {
	el    gnet.EventLoop
	flush gnet.Runnable

	// conns and spare belong to the event loop's goroutine.
	conns []*client
	spare []byte

	// mu guards pending and scheduled, appended to from every event loop.
	mu        sync.Mutex
	pending   []byte // whole messages for every connection of the loop
	scheduled bool   // a flush is queued on the loop
}

// A client is one connection, owned by its event loop.
type client struct {
	c       gnet.Conn
	idx     int // in loop.conns
	closing bool
}

// loopOf returns el's state, creating it on first use.
func (s *server) loopOf(el gnet.EventLoop) *loop {
	s.mu.RLock()
	l := s.loops[el]
	s.mu.RUnlock()
	if l != nil {
		return l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l = s.loops[el]; l == nil {
		l = &loop{el: el}
		l.flush = gnet.RunnableFunc(func(context.Context) error { l.flushNow(s.opts.SendQueue); return nil })
		s.loops[el] = l
		s.all = append(s.all, l)
	}
	return l
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	l := s.loopOf(c.EventLoop())
	cl := &client{c: c, idx: len(l.conns)}
	l.conns = append(l.conns, cl)
	c.SetContext(cl)
	return nil, gnet.None
}

func (s *server) OnClose(c gnet.Conn, _ error) gnet.Action {
	cl, _ := c.Context().(*client)
	if cl == nil {
		return gnet.None
	}
	l := s.loopOf(c.EventLoop())
	last := l.conns[len(l.conns)-1]
	l.conns[cl.idx] = last
	last.idx = cl.idx
	l.conns[len(l.conns)-1] = nil
	l.conns = l.conns[:len(l.conns)-1]
	c.SetContext(nil)
	return gnet.None
}

func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	whole, err := s.opts.Framing.Whole(buf, s.opts.MaxMessage)
	if whole > 0 {
		s.relay(buf[:whole])
		_, _ = c.Discard(whole)
	}
	if err != nil {
		return gnet.Close
	}
	return gnet.None
}

// relay queues b, whole messages, on every event loop.
func (s *server) relay(b []byte) {
	s.mu.RLock()
	for _, l := range s.all {
		l.mu.Lock()
		l.pending = append(l.pending, b...)
		schedule := !l.scheduled
		l.scheduled = true
		l.mu.Unlock()
		if schedule {
			_ = l.el.Execute(context.Background(), l.flush)
		}
	}
	s.mu.RUnlock()
}

// flushNow writes what is pending to every connection of the loop; it runs
// on the loop.
func (l *loop) flushNow(limit int) {
	l.mu.Lock()
	batch := l.pending
	l.pending, l.scheduled = l.spare[:0], false
	l.mu.Unlock()
	// Backwards: a connection that a write or a close removes is replaced
	// by the last one, which was already served.
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		cl := l.conns[i]
		if cl.closing {
			continue
		}
		if cl.c.OutboundBuffered()+len(batch) > limit {
			cl.closing = true
			_ = l.el.Close(cl.c) // slow consumer; OnClose runs now
			continue
		}
		_, _ = cl.c.Write(batch) // on error gnet closes it; OnClose runs now
	}
	l.spare = batch[:0]
	if cap(l.spare) > 1<<20 { // a burst: do not keep its memory
		l.spare = nil
	}
}

// echo writes back what arrives: the handler of gnet's own echo benchmark.
type echo struct{ gnet.BuiltinEventEngine }

func (*echo) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	_, _ = c.Write(buf)
	return gnet.None
}
