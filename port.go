package cport

import (
	"log/slog"
	"net"
	"sync"

	"cport.dev/cport/internal/engine"
)

// A Port is a completion port: sockets are associated with it, operations
// started on them complete into its queue, and workers dequeue the
// completions. Its methods are safe for concurrent use.
type Port struct {
	cfg     Config
	log     *slog.Logger
	eng     engine.Engine
	backend string // the engine's name
	q       queue
	timers  timers // Port.Timer's, and the deadlines of the port's connections

	mu        sync.Mutex // guards the fields below; taken before Conn.mu
	closed    bool
	conns     *Conn // a list through Conn.prev and Conn.next: no map entry per connection
	nconns    int
	listeners map[*Listener]struct{}
	packets   map[*PacketConn]struct{} // ListenPacket's, made at the first
	// dialing counts the Dial calls inside the engine's Dial: Add under mu
	// while the port is open, Wait by Close, so that the engine is never
	// asked to dial while it closes, nor after.
	dialing sync.WaitGroup
}

// Open creates a port.
func Open(cfg Config) (*Port, error) {
	cfg = cfg.withDefaults()
	p := &Port{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[*Listener]struct{}),
	}
	p.q.init(cfg.Concurrency)
	p.timers.init()
	p.q.handler = cfg.Handler
	p.q.submit = func() { p.eng.Submit() }
	eng, name, err := openEngine(p)
	if err != nil {
		return nil, err
	}
	p.eng, p.backend = eng, name
	return p, nil
}

// Backend returns the name of the engine the port runs on.
func (p *Port) Backend() string { return p.backend }

// Concurrency returns the port's concurrency cap.
func (p *Port) Concurrency() int { return p.cfg.Concurrency }

// Listen opens a listening socket associated with p under the completion
// key key. network is "tcp", "tcp4", "tcp6" or "unix"; address as for
// net.Listen. Accepting starts with Listener.Accept or
// Listener.AcceptMulti.
//
// A Unix socket is made as net.Listen makes it (a path, which must not
// exist, or "@name" for Linux's abstract namespace), then adopted
// (AdoptListener): the Listener's Close removes the socket's file, as
// net's does. Its connections have no addresses. An engine that cannot
// adopt a Unix socket (iocp) returns an error that matches
// ErrUnsupported.
func (p *Port) Listen(network, address string, key uint64) (*Listener, error) {
	if network == "unix" {
		return p.listenUnix(address, key)
	}
	l := &Listener{p: p, key: key}
	// Under p.mu, so that Close cannot slip in between the socket's
	// opening and its registration: Close closes every listener it finds.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	el, err := p.eng.Listen(network, address, (*listenerOwner)(l))
	if err != nil {
		var addr net.Addr
		if a, rerr := net.ResolveTCPAddr(network, address); rerr == nil {
			addr = a
		}
		return nil, &OpError{Op: "listen", Backend: p.backend, Addr: addr, Err: err}
	}
	l.io, l.addr = el, el.Addr()
	p.listeners[l] = struct{}{}
	return l, nil
}

// Post queues a completion of op OpPost carrying key, tag and n, as
// PostQueuedCompletionStatus does. It returns ErrClosed once p is closed.
func (p *Port) Post(key, tag uint64, n int) error {
	if !p.q.push(Completion{Op: OpPost, Key: key, Tag: tag, N: n}) {
		return ErrClosed
	}
	return nil
}

// Close closes the port: every waiting worker returns ErrClosed, and so does
// every later Wait; completions still queued are dropped (their receive
// buffers released); every listener and connection of the port is closed,
// its pending operations dropped without completions, and so are the dials
// still connecting (their sockets closed). Pending timers (Port.Timer) end
// without completions: Timer.Stop returns false for them. Close waits
// until the engine has stopped touching the port's buffers. Closing twice
// is harmless.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var conns []*Conn
	for c := p.conns; c != nil; {
		next := c.next
		c.prev, c.next = nil, nil // unlinked: a later Conn.Close finds it forgotten
		conns = append(conns, c)
		c = next
	}
	listeners, packets := p.listeners, p.packets
	p.conns, p.nconns, p.listeners, p.packets = nil, 0, nil, nil
	p.mu.Unlock()

	p.timers.close()
	p.q.close()
	p.dialing.Wait()
	for l := range listeners {
		l.close()
	}
	for _, c := range conns {
		c.close()
	}
	for pc := range packets {
		pc.Close()
	}
	p.eng.Close()
	return nil
}

// adopt registers a new connection; false if the port is closed.
func (p *Port) adopt(c *Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	c.next = p.conns
	if c.next != nil {
		c.next.prev = c
	}
	p.conns = c
	p.nconns++
	return true
}

func (p *Port) forgetConn(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.prev == nil && p.conns != c {
		return // not in the list: forgotten already, or never adopted
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		p.conns = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	p.nconns--
}

func (p *Port) forgetPacket(pc *PacketConn) {
	p.mu.Lock()
	delete(p.packets, pc)
	p.mu.Unlock()
}

func (p *Port) forgetListener(l *Listener) {
	p.mu.Lock()
	delete(p.listeners, l)
	p.mu.Unlock()
}

// Conns returns how many connections the port holds.
func (p *Port) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nconns
}

// portSide is the port as its engine sees it (engine.Port).
type portSide Port

// Running returns how many workers are running completions.
func (s *portSide) Running() int { return int(s.q.running.Load()) }

// Inline reports whether completions run on Config.Handler.
func (s *portSide) Inline() bool { return s.q.handler != nil }

// Closed reports whether the port is closed.
func (s *portSide) Closed() bool {
	q := &s.q
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}
