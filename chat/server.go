// Package chat is the broadcast chat server of the IOCP tutorial, done
// properly on package cport: every message a client sends is relayed to
// every connected client, the sender included, as PROTOCOL.md specifies.
//
// Like the tutorial, a pool of workers dequeues completions from one port:
// accepts register a session and start its receive; receives are cut into
// messages and relayed. Unlike it, no lock is held while writing to sockets,
// one shared buffer serves a whole fan-out, each client's outbound queue is
// bounded, and the server shuts down gracefully.
//
// Connections end in one of two ways. A client that did nothing wrong (it
// left, went idle, or the server shuts down) is closed gracefully: what was
// queued to it is still written, then a FIN (cport.Conn.Close). A client
// that ends its stream first (a half-close) stays in the room for
// Config.HalfCloseTimeout, receiving; at most Config.HalfCloseMax of them
// stay, the oldest being closed gracefully to make room. A client that
// misbehaved (a slow consumer, bad input) is reset at once
// (cport.Conn.Abort): the kernel keeps nothing of it, no unsent data in
// FIN-WAIT.
package chat

import (
	"container/list"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cport.dev/cport"
)

// Tags of the server's operations.
const (
	tagAccept uint64 = iota + 1
	tagRecv
	tagAcceptWS // of the WebSocket listener
)

// A Server is a running chat server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	port *cport.Port
	ln   *cport.Listener
	wsln *cport.Listener // the WebSocket gateway's (Config.WSAddr), or nil
	hub  *hub
	bus  Bus   // cluster relay, or nil: local fan-out only
	flow *flow // the senders paused (Config.SenderLimit)

	// relaying guards draining. Every relay holds it for reading and
	// checks draining first; Shutdown sets draining holding it for
	// writing, which it gets once the last relay in progress has queued
	// its messages: from then on no relay queues anything, and the send
	// queues it watches can only empty.
	relaying sync.RWMutex
	draining bool // Shutdown started: received data is dropped
	stats    counters
	// shards are the relay path's counters: one per worker, and a last
	// one for the flow goroutine and the bus (see tally).
	shards []shard

	// serving is set once Serve listens; ending once Shutdown or Close
	// has begun. Ready reads them.
	serving, ending atomic.Bool

	stop     chan struct{} // closed by Close: the sweeper returns
	stopOnce sync.Once
	workers  sync.WaitGroup

	// closing holds the connections that left the hub closed gracefully
	// with bytes still queued, for Shutdown to wait for them too; those
	// written are pruned as it grows (at prune entries) and by pending.
	closingMu sync.Mutex
	closing   map[*cport.Conn]struct{}
	prune     int

	// TLS clients (Config.TLS, see tls.go): handshaking counts those in
	// their handshake, against MaxConns; tlsWG their readers and writers;
	// tlsLive lists the sessions whose writer runs, for Shutdown's pending
	// bytes, guarded by tlsMu. Lock order: tlsMu, then a tlsSide's mu; no
	// other chat lock is held with tlsMu.
	latency     latencyHist // sampled deliveries (latency.go)
	handshaking atomic.Int64
	tlsWG       sync.WaitGroup
	tlsMu       sync.Mutex
	tlsLive     map[*session]struct{}

	// lingering lists the half-closed sessions, the oldest first, for
	// HalfCloseMax (session.ext.linger.at is a session's element). Guarded by
	// lingerMu, which is taken with no other chat lock held.
	lingerMu  sync.Mutex
	lingering list.List

	// limits applies MaxConnsPerIP and AcceptRate at accept; release
	// uncounts a session's address. Its lock is taken with no other chat
	// lock held (release takes it after hub.remove).
	limits *admission
	// events logs the disconnections for cause, the refusals and the
	// evictions: the first of a kind at once, then a count per
	// eventEvery (see eventLog).
	events *eventLog
	// epoch is the origin of clock, the monotonic time of the deadlines.
	epoch time.Time

	// Config.ReleaseMemory: peak is the most clients held since memory
	// was last freed (at lastFree, unix nanoseconds), and held the clients
	// held then; freeTimer frees it, armed (freeArmed) once a crowd has
	// left or has gathered, which gathered says; lastAccept is the time of
	// the last accept (unix nanoseconds).
	peak       atomic.Int64
	held       atomic.Int64
	freeTimer  *time.Timer
	freeArmed  atomic.Bool
	gathered   atomic.Bool
	lastFree   atomic.Int64
	lastAccept atomic.Int64
}

// Thresholds of Config.ReleaseMemory.
const (
	freeMinPeak = 256              // a crowd: fewer clients leave little to give back
	freeShare   = 8                // the crowd has left when an eighth of it remains
	freeQuiet   = time.Second      // the rest of it is given that long to go
	freeEvery   = 10 * time.Second // at most one release in that long
)

// counters are the server's statistics, updated atomically.
type counters struct {
	accepted, refused, active, halfClosed atomic.Int64
	slowConsumers, badInput, idleKill     atomic.Int64
	left, connErrors                      atomic.Int64
	halfCloseEvicted                      atomic.Int64
	paused                                atomic.Int64

	// Of refused: by MaxConnsPerIP, by AcceptRate. Of badInput: by
	// MessageTimeout or for a message over the limit. Of slowConsumers:
	// by WriteTimeout.
	refusedPerIP, refusedRate, messageTimeouts, oversize, writeTimeouts atomic.Int64
	handshakeFailures                                                   atomic.Int64
	// The WebSocket gateway's: its clients held now, its upgrades, the
	// pages it served, the requests it refused.
	webActive, webUpgrades, webPages, webRefused, webFailed atomic.Int64
}

// Stats is a snapshot of a server's counters. The relay counters
// (Relayed through BytesOut) are added by each worker after the batch of
// completions it handles, so they may trail what clients have already
// received by one batch.
type Stats struct {
	Accepted         int64 // connections accepted
	Refused          int64 // connections closed or reset at once after accept: by MaxConns, MaxConnsPerIP or AcceptRate
	RefusedPerIP     int64 // of them, reset by Config.MaxConnsPerIP
	RefusedRate      int64 // of them, reset by Config.AcceptRate
	Active           int64 // connections held now, HalfClosed included
	HalfClosed       int64 // of them, clients that ended their stream and still receive (Config.HalfCloseTimeout)
	HalfCloseEvicted int64 // half-closed clients closed gracefully before their HalfCloseTimeout, to keep Config.HalfCloseMax
	Relayed          int64 // runs of whole messages relayed, local and from other servers of a cluster: usually one per read, of one or more messages (raw: one chunk)
	Deliveries       int64 // runs queued to clients (Relayed times the clients each reached)
	MessagesIn       int64 // messages of local clients relayed (raw: chunks, one per read)
	MessagesOut      int64 // messages queued to clients, local and from other servers (each message times the clients it reached)
	BytesIn          int64 // bytes received from clients, whole messages or not
	BytesOut         int64 // bytes queued to clients (frame: with the length of each)
	Left             int64 // clients that left: ended their stream (after their stay, HalfCloseTimeout) or reset the connection
	ConnErrors       int64 // connections that ended with another error
	SlowConsumers    int64 // clients disconnected for a full send queue, or a stalled one (Config.WriteTimeout)
	WriteTimeouts    int64 // of them, for a stalled send queue (Config.WriteTimeout)
	BadInput         int64 // clients disconnected for malformed, oversized or late input
	Oversize         int64 // of them, for a message over Config.MaxMessage
	MessageTimeouts  int64 // of them, for a message late to complete (Config.MessageTimeout)
	IdleTimeouts     int64 // clients disconnected for idling
	SendersPaused    int64 // times the server stopped reading from a client that got too far ahead of the room (Config.SenderLimit)
	// HandshakeFailures counts the TLS clients (Config.TLS) whose
	// handshake failed or timed out; they are not counted in Active, Left
	// or ConnErrors.
	HandshakeFailures int64
	// The WebSocket gateway (Config.WSAddr): WebSockets is how many of
	// Active are its clients; WSUpgrades counts its requests upgraded to
	// WebSocket, WSPages the chat pages it served, WSRefused the requests
	// it answered with an error (an unknown path, a bad upgrade, an origin
	// not allowed), WSFailed the connections that failed or timed out
	// (Config.WSHandshakeTimeout) before their request was whole. Those
	// not upgraded are not counted in Active, Left or ConnErrors.
	WebSockets, WSUpgrades, WSPages, WSRefused, WSFailed int64
	// Latency is the delivery latency inside the server, sampled: about
	// one relayed message in 64, its write to one client (latency.go).
	Latency Latency
}

// New opens the port and the listening socket. Serve runs the server. It
// returns the error of Config.Validate if a field of cfg is out of range.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	recvSize := cport.DefaultRecvBufferSize
	if cfg.Framing == Raw {
		recvSize = min(recvSize, cfg.MaxMessage) // a raw message is one read
	}
	port, err := cport.Open(cport.Config{
		Backend:        cfg.Backend,
		Concurrency:    cfg.Workers,
		RecvBufferSize: recvSize,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	ln, err := port.Listen("tcp", cfg.Addr, 0)
	if err != nil {
		port.Close()
		return nil, err
	}
	var wsln *cport.Listener
	if cfg.WSAddr != "" {
		if wsln, err = port.Listen("tcp", cfg.WSAddr, 0); err != nil {
			port.Close()
			return nil, err
		}
	}
	bus, err := newBus(cfg)
	if err != nil {
		port.Close() // and its listeners
		return nil, err
	}
	s := &Server{
		cfg:  cfg,
		log:  cfg.Logger,
		port: port,
		ln:   ln,
		wsln: wsln,
		hub:  newHub(),
		bus:  bus,
		flow: newFlow(),
		stop: make(chan struct{}),

		closing: make(map[*cport.Conn]struct{}),
		tlsLive: make(map[*session]struct{}),
		limits:  newAdmission(cfg, time.Now()),
		events:  newEventLog(cfg.Logger, cfg, eventEvery),
		epoch:   time.Now(),
		shards:  make([]shard, cfg.Workers+1),
	}
	s.freeTimer = time.AfterFunc(math.MaxInt64, s.freeMemory)
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// WSAddr returns the address of the WebSocket gateway (Config.WSAddr), or
// nil if there is none.
func (s *Server) WSAddr() net.Addr {
	if s.wsln == nil {
		return nil
	}
	return s.wsln.Addr()
}

// Backend returns the name of the cport engine the server runs on.
func (s *Server) Backend() string { return s.port.Backend() }

// Stats returns a snapshot of the server's counters. Each is read
// atomically, not all at once: counters that move together (Relayed and
// Deliveries) may be caught between two batches of a worker.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Accepted: c.accepted.Load(), Refused: c.refused.Load(), Active: c.active.Load(),
		HalfClosed: c.halfClosed.Load(), HalfCloseEvicted: c.halfCloseEvicted.Load(),
		SlowConsumers: c.slowConsumers.Load(), BadInput: c.badInput.Load(), IdleTimeouts: c.idleKill.Load(),
		Left: c.left.Load(), ConnErrors: c.connErrors.Load(),
		RefusedPerIP: c.refusedPerIP.Load(), RefusedRate: c.refusedRate.Load(),
		MessageTimeouts: c.messageTimeouts.Load(), Oversize: c.oversize.Load(), WriteTimeouts: c.writeTimeouts.Load(),
		SendersPaused: c.paused.Load(), HandshakeFailures: c.handshakeFailures.Load(),
		WebSockets: c.webActive.Load(), WSUpgrades: c.webUpgrades.Load(), WSPages: c.webPages.Load(), WSRefused: c.webRefused.Load(), WSFailed: c.webFailed.Load(),
		Latency: s.latency.snapshot(),
	}
	sumShards(s.shards, &st)
	return st
}

// Serve accepts and relays until Shutdown or Close, then returns nil.
func (s *Server) Serve() error {
	if s.bus != nil {
		if err := s.bus.Start(s.relayRemote); err != nil {
			s.Close()
			return err
		}
	}
	err := s.ln.AcceptMulti(tagAccept)
	if err == nil && s.wsln != nil {
		err = s.wsln.AcceptMulti(tagAcceptWS)
	}
	if err != nil {
		select {
		case <-s.stop:
			return nil // Shutdown or Close came first: nothing to serve
		default:
			return err
		}
	}
	s.serving.Store(true)
	s.log.Info("chat server listening", "addr", s.Addr().String(), "backend", s.Backend(),
		"framing", s.cfg.Framing.String(), "workers", s.cfg.Workers, "tls", s.cfg.TLS != nil)
	if s.wsln != nil {
		scheme := "http://"
		if s.cfg.TLS != nil {
			scheme = "https://"
		}
		s.log.Info("websocket gateway listening", "addr", s.wsln.Addr().String(), "page", scheme+s.wsln.Addr().String()+"/", "endpoint", "/ws")
	}
	if s.cfg.SenderLimit > 0 || s.cfg.SenderMessages > 0 || s.cfg.MessageRate > 0 {
		go s.runFlow()
	}
	if every := s.sweepEvery(); every > 0 {
		go s.sweep(every)
	}
	for i := range s.cfg.Workers {
		s.workers.Add(1)
		go s.work(&s.shards[i])
	}
	s.workers.Wait()
	return nil
}

// Shutdown stops accepting and reading, delivers what was already accepted
// until every send queue is empty (those of the connections closing
// gracefully included), ctx is done or ShutdownTimeout passes, then closes
// every connection and makes Serve return. The clients still holding it up
// then, which did not read, are reset.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	s.ending.Store(true)
	s.relaying.Lock() // waits for the relays in progress
	s.draining = true
	s.relaying.Unlock()
	s.ln.Close()
	if s.wsln != nil {
		s.wsln.Close()
		s.goingAway()
	}
	busDone := make(chan struct{})
	go func() {
		defer close(busDone)
		if s.bus != nil {
			s.bus.Close(ctx) // publishes what it took, for the other servers' clients
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.pending() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			s.log.Warn("shutdown: gave up delivering", "queued_bytes", s.pending(), "reset", s.abortStuck(), "err", ctx.Err())
			<-busDone // done too
			s.Close()
			return ctx.Err()
		}
	}
	<-busDone
	if left := s.closeTLS(ctx); left > 0 {
		s.log.Warn("shutdown: gave up closing TLS clients gracefully", "left", left, "err", ctx.Err())
	}
	s.Close()
	return nil
}

// closeTLS closes every TLS client gracefully (close_notify, then FIN),
// and waits for their writers to end, or ctx. It returns how many were
// left when ctx ended.
func (s *Server) closeTLS(ctx context.Context) int {
	s.tlsMu.Lock()
	n := len(s.tlsLive)
	for ss := range s.tlsLive {
		ss.ext.tls.close()
	}
	s.tlsMu.Unlock()
	if n == 0 {
		return 0
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		s.tlsMu.Lock()
		n = len(s.tlsLive)
		s.tlsMu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return n
		}
	}
}

// pending returns the bytes queued to all clients, in the hub or closing.
func (s *Server) pending() int {
	n := 0
	s.hub.each(func(ss *session) {
		if !ss.secure {
			n += ss.conn.Queued()
		}
	})
	s.tlsMu.Lock()
	for ss := range s.tlsLive {
		n += ss.queued()
	}
	s.tlsMu.Unlock()
	s.closingMu.Lock()
	for c := range s.closing {
		if q := c.Queued(); q > 0 {
			n += q
		} else {
			delete(s.closing, c)
		}
	}
	s.closingMu.Unlock()
	return n
}

// abortStuck resets the connections that still have bytes queued, and
// returns how many: Shutdown gave up on them, and the kernel is to keep
// nothing of them once the process is gone.
func (s *Server) abortStuck() int {
	n := 0
	abort := func(c *cport.Conn) {
		if c.Queued() > 0 {
			c.Abort()
			n++
		}
	}
	s.hub.each(func(ss *session) {
		if !ss.secure {
			abort(ss.conn)
		}
	})
	s.tlsMu.Lock()
	for ss := range s.tlsLive {
		if ss.queued() > 0 {
			ss.conn.Abort()
			n++
		}
	}
	s.tlsMu.Unlock()
	s.closingMu.Lock()
	for c := range s.closing {
		abort(c)
	}
	s.closingMu.Unlock()
	return n
}

// closeConn closes c gracefully (Conn.Close: what is queued is still
// written), and keeps it among the closing ones while something is.
func (s *Server) closeConn(c *cport.Conn) {
	c.Close()
	if c.Queued() == 0 {
		return
	}
	s.closingMu.Lock()
	if len(s.closing) >= s.prune {
		s.pruneClosingLocked()
	}
	s.closing[c] = struct{}{}
	s.closingMu.Unlock()
}

// pruneClosingLocked forgets the closing connections that have written
// everything: each holds its cport.Conn, and the engine's state of it,
// however long ago it closed. An empty map is made anew, its buckets
// sized for a crowd gone. Called with closingMu held.
func (s *Server) pruneClosingLocked() {
	for k := range s.closing {
		if k.Queued() == 0 {
			delete(s.closing, k)
		}
	}
	if len(s.closing) == 0 {
		s.closing = make(map[*cport.Conn]struct{})
	}
	s.prune = max(64, 2*len(s.closing))
}

// busCloseWait is how long Close lets the bus publish what it took.
const busCloseWait = 500 * time.Millisecond

// Close closes every connection at once and makes Serve return.
func (s *Server) Close() error {
	s.stopOnce.Do(func() {
		s.ending.Store(true)
		close(s.stop)
		if s.bus != nil {
			ctx, cancel := context.WithTimeout(context.Background(), busCloseWait)
			s.bus.Close(ctx) // sends what it took, within a short bound (or waits for Shutdown's)
			cancel()
		}
		s.port.Close() // wakes every worker with cport.ErrClosed
		s.hub.each(func(ss *session) {
			if ss.state.Load() == stateHalfClosed {
				ss.ext.linger.timer.Stop() // the port closed its connection
			}
		})
		s.tlsMu.Lock()
		for ss := range s.tlsLive {
			ss.ext.tls.close() // a writer waiting for messages (its session half-closed) ends too
		}
		s.tlsMu.Unlock()
		s.tlsWG.Wait()   // the port closed their connections: they are ending
		s.events.flush() // what was due
		s.freeTimer.Stop()
	})
	return nil
}

// work is the tutorial's ThreadComplete: dequeue, dispatch, repeat. It
// counts what it relays in sh, once per batch.
func (s *Server) work(sh *shard) {
	defer s.workers.Done()
	w := s.port.Worker()
	defer w.Close()
	batch := make([]cport.Completion, 16)
	for {
		n, err := w.Wait(batch, -1)
		if err != nil {
			return // cport.ErrClosed: the port is closed
		}
		var t tally
		for i := range batch[:n] {
			c := &batch[i]
			switch c.Op {
			case cport.OpAccept:
				if c.Tag == tagAcceptWS {
					s.acceptedWS(c)
				} else {
					s.accepted(c)
				}
			case cport.OpRecv:
				s.received(c, &t)
			case cport.OpSend:
				s.sent(c.Tag, c.Err) // a sampled delivery (latency.go)
			}
			*c = cport.Completion{}
		}
		sh.add(&t)
	}
}

// accepted registers a new client and starts receiving from it.
func (s *Server) accepted(c *cport.Completion) {
	if c.Err != nil {
		if !errors.Is(c.Err, cport.ErrCanceled) { // canceled: the listener was closed
			s.log.Warn("accept failed", "err", c.Err)
		}
		return
	}
	ss := &session{conn: c.Conn}
	if !s.admit(ss) {
		return
	}
	if s.cfg.TLS != nil {
		s.startTLS(ss)
		return
	}
	if !s.join(ss) {
		return
	}
	if err := c.Conn.RecvMulti(tagRecv); err != nil {
		s.ended(ss, err)
	}
}

// splitMax returns the limit of the messages of ss, as its splitter takes
// it: Config.MaxMessage, or a WebSocket client's decoder's.
func (s *Server) splitMax(ss *session) int {
	if ss.web {
		return splitLimit(ss.ext.ws.dec.limit)
	}
	return splitLimit(s.cfg.MaxMessage)
}

// join registers an admitted session with the room, unless that holds
// MaxConns already: it then refuses it and returns false.
func (s *Server) join(ss *session) bool {
	if ss.web { // its decoder writes whole messages in Frame framing
		ss.split = newSplitter(Frame)
	} else {
		ss.split = newSplitter(s.cfg.Framing)
	}
	s.touch(ss)
	if !s.hub.add(ss, s.cfg.MaxConns) {
		s.refuse(ss)
		return false
	}
	s.stats.accepted.Add(1)
	if ss.web {
		s.stats.webActive.Add(1)
	}
	if n := s.stats.active.Add(1); s.cfg.ReleaseMemory {
		for {
			p := s.peak.Load()
			if n <= p || s.peak.CompareAndSwap(p, n) {
				break
			}
		}
		s.arrived(n)
	}
	ss.conn.SetValue(ss) // the session of every completion of the connection
	return true
}

// refuse closes an admitted session's connection for MaxConns.
func (s *Server) refuse(ss *session) {
	s.leave(ss)
	s.stats.refused.Add(1)
	s.events.add(evRefusedMaxConns, addrString(ss.conn.RemoteAddr()))
	s.closeSession(ss)
}

// closeSession closes ss's connection gracefully: what is queued is still
// written (by the writer of a TLS client, which then closes it).
func (s *Server) closeSession(ss *session) {
	if ss.secure {
		ss.ext.tls.close()
		return
	}
	s.closeConn(ss.conn)
}

// received handles a receive completion: cut the bytes into messages and
// relay them, or end the session. It counts what it relayed in t.
func (s *Server) received(c *cport.Completion, t *tally) {
	ss, _ := c.Conn.Value().(*session)
	if ss == nil { // cannot happen: the value is set before the first receive
		c.Release()
		return
	}
	if ss.web && !ss.ext.ws.open {
		s.shake(ss, c, t)
		return
	}
	if c.Err != nil {
		ss.dropOut()
		s.ended(ss, c.Err)
		return
	}
	s.touch(ss)
	t.bytesIn += int64(len(c.Buf))
	if ss.web {
		s.receivedWS(ss, c, t)
		return
	}
	at, pause := s.relayAll(ss, c.Buf, 0, t)
	if pause {
		ss.flow.heldAt = heldAt(at, c.Buf)
		s.pause(ss, c) // c is released when ss may go on
		return
	}
	c.Release()
}

// heldAt returns what sessionFlow.heldAt keeps for a receive of buf paused
// where relayAll stopped, at: 0 at its end.
func heldAt(at int, buf []byte) int32 {
	if at >= len(buf) {
		return 0
	}
	return int32(at)
}

// relayAll relays the messages in buf[from:], received from ss, counting
// them in t, and returns where it stopped, and whether ss is now too far
// ahead of the room (Config.SenderLimit) to be read from. It stops before
// the end of buf only to pause ss: a read full of small messages is relayed
// a share at a time (see flow.go).
func (s *Server) relayAll(ss *session, buf []byte, from int, t *tally) (at int, pause bool) {
	s.relaying.RLock()
	defer s.relaying.RUnlock()
	if s.draining {
		return len(buf), false // shutting down: accept nothing new
	}
	in := buf[from:]
	msgs := 0    // the messages relayed
	longest := 0 // the longest send queue the relays found
	skip := (*session)(nil)
	if s.cfg.NoEcho {
		skip = ss
	}
	// est bounds ss.ahead from above as runs are relayed: what was queued
	// before, and each run's weight per client it was queued to.
	room := s.stats.active.Load()
	limited := s.cfg.SenderLimit > 0 || s.cfg.SenderMessages > 0
	b := s.budget(room)
	est, estMsgs, contended := int64(0), int64(0), false
	if ss.flow == nil && (limited || s.cfg.MessageRate > 0) {
		ss.flow = new(sessionFlow) // it sends: it may be paused
	}
	if limited {
		est, estMsgs = ss.ahead(room)
		contended = s.flow.contended(ss, s.clock())
	}
	ss.split.short = contended // a read relayed a share at a time
	limit := s.splitMax(ss)
	for len(in) > 0 {
		run, rest, err := ss.split.next(in, limit)
		if err != nil {
			ss.kill(reasonBadInput, err)
			break
		}
		if len(run) > 0 {
			k := ss.split.taken()
			msgs += k
			o := outgoing{tcp: s.msgOf(ss, run), src: run, srcF: s.cfg.Framing}
			if ss.web {
				o.srcF = Frame // as the session's decoder wrote it
			}
			n, q := s.hub.relay(&o, skip, s.cfg.SendQueue, s.sampleTag())
			t.relayed++
			t.deliveries += int64(n)
			t.msgsIn += int64(k)
			t.msgsOut += int64(n) * int64(k)
			t.bytesOut += o.bytesOut(n)
			longest = max(longest, q)
			if s.bus != nil {
				s.bus.Publish(o.tcp.Bytes()) // copies; in order per sender: see Bus
			}
			if limited {
				est += int64(n) * ss.keep(o.tcp, k)
				estMsgs += int64(n) * int64(k)
				if o.ws != nil { // counted in ahead, as tcp is
					ss.flow.out = append(ss.flow.out, kept{o.ws, int64(k)})
				}
			} else {
				o.tcp.Release()
				o.release()
			}
		}
		in = rest
		if limited && b.over(est, estMsgs, contended) && len(in) > 0 && ss.why.Load() == nil {
			if est, estMsgs = ss.ahead(room); b.over(est, estMsgs, contended) {
				// Far enough ahead: the rest waits in the held buffer.
				if s.cfg.MessageRate > 0 {
					s.overRate(ss, msgs)
				}
				ss.flow.resumeBelow, ss.flow.byCount = b.per/2, est <= b.per
				return len(buf) - len(in), true
			}
		}
	}
	ss.split.next(nil, limit) // let go of a completed carried message: idle sessions hold no buffer
	msgs += ss.split.taken()
	s.carried(ss, len(buf))
	if f := ss.flow; f != nil && ss.why.Load() == nil {
		pause = s.cfg.MessageRate > 0 && s.overRate(ss, msgs)
		// Unless overLimit sets them:
		f.resumeBelow, f.byCount = math.MaxInt64, false
		crowded := longest > s.cfg.SendQueue/2 // a client is half way to being evicted
		pause = limited && (b.over(est, estMsgs, contended) || crowded && est > b.per/4) && overLimit(ss, b, room, contended, crowded) || pause
	}
	return len(buf), pause
}

// ended handles the end of a session's receive. A client that ended its
// stream (io.EOF) stays in the room for HalfCloseTimeout, the oldest of
// those staying being let go if there are more than HalfCloseMax; any
// other end unregisters the session, logging why unless the client simply
// left.
func (s *Server) ended(ss *session, err error) {
	dropped := ss.split.pending()
	ss.split.reset() // a partial message is dropped, never relayed
	if ss.web {
		dropped = ss.ext.ws.dec.pending()
		ss.ext.ws.dec.reset()
	}
	if ss.why.Load() != nil || !errors.Is(err, io.EOF) {
		if dropped > 0 && ss.why.Load() == nil && peerLeft(err) {
			// Bad input (PROTOCOL.md): named and logged, where a reset
			// between messages is a client leaving.
			s.events.add(evResetMidMessage, addrString(ss.conn.RemoteAddr()),
				slog.Int("dropped_bytes", dropped), slog.String("err", err.Error()))
		}
		s.release(ss, err)
		return
	}
	if dropped > 0 {
		s.events.add(evClosedMidMessage, addrString(ss.conn.RemoteAddr()), slog.Int("dropped_bytes", dropped))
	}
	if s.cfg.HalfCloseTimeout < 0 {
		s.release(ss, err)
		return
	}
	// The timer is armed only once it is published with the state, so
	// that it cannot fire before: lingered must find the session
	// half-closed. A kill that came in between found the session open and
	// left its end to us.
	s.stats.halfClosed.Add(1)
	if ss.ext == nil {
		ss.ext = new(sessionExt)
	}
	ss.ext.linger.timer = time.AfterFunc(math.MaxInt64, func() { s.lingered(ss) })
	ss.state.Store(stateHalfClosed)
	oldest := s.startLinger(ss)
	ss.ext.linger.timer.Reset(s.cfg.HalfCloseTimeout)
	if ss.why.Load() != nil {
		ss.ext.linger.timer.Reset(0)
	}
	if oldest != nil {
		s.evict(oldest)
	}
}

// startLinger lists ss, which has just become half-closed, among the
// lingering sessions, unless it has already been released (a kill or a
// failed write fired its timer as soon as its state was published). When
// that makes more than HalfCloseMax, it unlists the oldest and returns it,
// for the caller to evict.
func (s *Server) startLinger(ss *session) (oldest *session) {
	s.lingerMu.Lock()
	defer s.lingerMu.Unlock()
	// lingered unlists ss after setting its state, under lingerMu: if it
	// has not run yet, it will find ss listed.
	if ss.state.Load() != stateHalfClosed {
		return nil
	}
	ss.ext.linger.at = s.lingering.PushBack(ss)
	if limit := s.cfg.HalfCloseMax; limit >= 0 && s.lingering.Len() > limit {
		oldest = s.lingering.Remove(s.lingering.Front()).(*session)
		oldest.ext.linger.at = nil
	}
	return oldest
}

// stopLinger unlists ss from the lingering sessions, if it is listed.
func (s *Server) stopLinger(ss *session) {
	s.lingerMu.Lock()
	if ss.ext.linger.at != nil {
		s.lingering.Remove(ss.ext.linger.at)
		ss.ext.linger.at = nil
	}
	s.lingerMu.Unlock()
}

// lingered ends a half-closed session's stay: its timer fired, or was fired
// by a kill or a failed write (session.expire). It may run more than once.
func (s *Server) lingered(ss *session) {
	if !ss.state.CompareAndSwap(stateHalfClosed, stateReleased) {
		return
	}
	s.stopLinger(ss)
	s.stats.halfClosed.Add(-1)
	s.release(ss, io.EOF)
}

// evict ends the stay of ss, the oldest half-closed session, before its
// timer fires, to keep at most HalfCloseMax: it is closed gracefully, as
// when its timer fires, unless that happened meanwhile. The log gets a
// count every eventEvery, not a line per client.
func (s *Server) evict(ss *session) {
	if !ss.state.CompareAndSwap(stateHalfClosed, stateReleased) {
		return // its timer fired meanwhile
	}
	ss.ext.linger.timer.Stop() // if it fires all the same, lingered finds it released
	s.stats.halfClosed.Add(-1)
	s.stats.halfCloseEvicted.Add(1)
	s.release(ss, io.EOF)
	s.events.add(evHalfCloseEvicted, addrString(ss.conn.RemoteAddr()))
}

// release unregisters a session and closes its connection gracefully (a
// client killed for misbehaving was reset already), then counts and logs
// why it ended (countEnd). It is the one place sessions leave.
func (s *Server) release(ss *session, err error) {
	ss.state.Store(stateReleased)
	s.closeSession(ss) // before leaving the hub: Shutdown's pending counts it throughout
	s.hub.remove(ss)
	s.leave(ss)
	s.countEnd(ss, err) // before Active falls: whoever sees the client gone in Stats sees why
	if n := s.stats.active.Add(-1); s.cfg.ReleaseMemory {
		s.left(n)
	}
	if ss.web {
		s.stats.webActive.Add(-1)
	}
}

// countEnd counts and logs why ss ended: err, or the reason of a kill.
func (s *Server) countEnd(ss *session, err error) {
	peer := addrString(ss.conn.RemoteAddr())
	if d := ss.why.Load(); d != nil && d.reason == reasonWSClose {
		s.stats.left.Add(1)
		s.log.Debug("client left", "peer", peer, "websocket", true)
		return
	} else if d != nil {
		var kind eventKind
		switch d.reason {
		case reasonSlowConsumer:
			s.stats.slowConsumers.Add(1)
			if errors.Is(d.err, errWriteTimeout) {
				s.stats.writeTimeouts.Add(1)
			}
			kind = evSlowConsumer
		case reasonBadInput:
			s.stats.badInput.Add(1)
			kind = evBadInput
			if errors.Is(d.err, ErrLineTooLong) || errors.Is(d.err, ErrFrameTooLarge) {
				s.stats.oversize.Add(1)
			}
			if errors.Is(d.err, errMessageTimeout) {
				s.stats.messageTimeouts.Add(1)
				kind = evMessageTimeout
			}
		case reasonIdle:
			s.stats.idleKill.Add(1)
			kind = evIdle
		}
		if d.err != nil {
			s.events.add(kind, peer, slog.String("err", d.err.Error()))
		} else {
			s.events.add(kind, peer)
		}
		return
	}
	switch {
	case errors.Is(err, io.EOF):
		s.stats.left.Add(1)
		s.log.Debug("client left", "peer", peer)
	case peerLeft(err):
		s.stats.left.Add(1)
		s.log.Debug("client left", "peer", peer, "err", err.Error())
	default:
		s.stats.connErrors.Add(1)
		s.events.add(evConnError, peer, slog.String("err", err.Error()))
	}
}

// left arms the release of memory (Config.ReleaseMemory) once a crowd has
// left: n clients remain, an eighth of the peak or fewer. The release
// happens if that still holds freeQuiet plus HalfCloseTimeout later (or at
// the next freeEvery).
func (s *Server) left(n int64) {
	p := s.peak.Load()
	if p < freeMinPeak || n > p/freeShare {
		return
	}
	// Armed already, unless for a crowd that gathered: that one left.
	if !s.freeArmed.CompareAndSwap(false, true) && !s.gathered.CompareAndSwap(true, false) {
		return
	}
	wait := freeQuiet + max(s.cfg.HalfCloseTimeout, 0) // the crowd's half-closed clients go too
	if next := time.Unix(0, s.lastFree.Load()).Add(freeEvery); time.Until(next) > wait {
		wait = time.Until(next)
	}
	s.freeTimer.Reset(wait)
}

// arrived arms the release of memory (Config.ReleaseMemory) once a crowd
// has gathered: n clients are held, at least freeMinPeak and twice as many
// as at the last release. The release happens once no client has come
// for freeQuiet: the garbage of their arrival (accepts, first reads,
// greetings) is then freed, where an idle server would keep it, making no
// garbage that starts a collection.
func (s *Server) arrived(n int64) {
	s.lastAccept.Store(time.Now().UnixNano())
	if n < freeMinPeak || n < 2*s.held.Load() || !s.freeArmed.CompareAndSwap(false, true) {
		return
	}
	s.gathered.Store(true)
	wait := freeQuiet
	if next := time.Unix(0, s.lastFree.Load()).Add(freeEvery); time.Until(next) > wait {
		wait = time.Until(next)
	}
	s.freeTimer.Reset(wait)
}

// freeMemory gives back to the system the memory that a crowd which left
// used, or the garbage of one's arrival (Config.ReleaseMemory): the
// freeTimer's function.
func (s *Server) freeMemory() {
	if !s.freeArmed.Load() {
		return // a run of a timer re-armed while it ran, after a release
	}
	why := "the clients left"
	if s.gathered.Load() {
		why = "the clients gathered"
		if quiet := time.Since(time.Unix(0, s.lastAccept.Load())); quiet < freeQuiet {
			s.freeTimer.Reset(freeQuiet - quiet) // still coming
			return
		}
	} else if s.stats.active.Load() > s.peak.Load()/freeShare {
		s.freeArmed.Store(false) // a dip: clients came back meanwhile
		return
	}
	start := time.Now()
	s.closingMu.Lock()
	s.pruneClosingLocked() // no close may come to prune the last ones
	s.closingMu.Unlock()
	debug.FreeOSMemory()
	debug.FreeOSMemory() // what sync.Pools kept through the first collection
	s.lastFree.Store(time.Now().UnixNano())
	held := s.stats.active.Load()
	s.held.Store(held)
	peak := s.peak.Swap(held) // a new crowd must gather
	s.gathered.Store(false)
	s.freeArmed.Store(false)
	s.log.Info("memory released: "+why, "peak", peak, "held", held, "took", time.Since(start).String())
}

// peerLeft reports whether err is the peer's reset (or a write failing
// after it): a client that closes with data unread resets, as ordinary a
// way to leave as a FIN, and is no log line per client when thousands come
// and go.
func peerLeft(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// touch records that ss has just been heard from, for the idle timeout.
func (s *Server) touch(ss *session) {
	if s.cfg.IdleTimeout > 0 {
		ss.lastRecv.Store(time.Now().UnixNano())
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "?"
	}
	return a.String()
}
