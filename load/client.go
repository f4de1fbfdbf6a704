package load

import (
	"io"
	"net"
	"sync/atomic"
)

// A client is one connection: a receiver that checks everything it gets
// and, for senders, the sending side.
type client struct {
	r      *run
	id     int
	conn   net.Conn  // closed early when detached
	server int       // the index of its server in Config.Addrs
	own    int32     // the sender index of this client, or -1
	ws     *wsClient // the WebSocket side (Config.WebSocket), or nil

	// The receive side belongs to the reader goroutine until it returns.
	chk         checker
	lat         []latencyRun  // latencies of messages carrying a time inside the window, to record (flushLatencies)
	shard       *latencyShard // where they are recorded
	in          inbox         // what was read and not checked yet
	at          int64         // the run's clock when the last read returned
	from, to    int64         // the measured window, as of the last read
	heard       []bool        // by server: a probe sent through it arrived
	unheard     int           // servers whose probe has not arrived yet
	accounted   int64         // data messages received, duplicates excepted
	inWindow    int64         // of those, received inside the measured window
	ownWindow   int64         // of those, this sender's own echoes
	published   int64         // accounted, as last stored in progress
	newAcks     int64         // own echoes received since the last publish
	windowReads int64         // reads that returned inside the measured window
	windowEmpty int64         // reads that found nothing (EAGAIN), inside the measured window
	readErr     error         // why reading stopped, if the run did not stop it

	// Written by the reader goroutine, read by others while it runs.
	progress atomic.Int64 // accounted, every publishEvery messages and after each read
	errCount atomic.Int64 // duplicated + reordered + corrupted so far
	done     atomic.Bool  // the reader returned

	// Senders only. acks is written by the reader (own echoes received,
	// duplicates excepted, after each read), read by the sender; wake tells the sender that
	// acks moved (capacity 1). sent is written by the sender goroutine;
	// sendErr belongs to it until it returns.
	acks    atomic.Int64
	wake    chan struct{}
	sent    atomic.Int64
	sendErr error
}

func (r *run) newClient(id int, conn net.Conn) *client {
	c := &client{
		r:       r,
		id:      id,
		conn:    conn,
		server:  id % len(r.cfg.Addrs),
		own:     r.senderOf(id),
		chk:     newChecker(r.cfg.Senders),
		heard:   make([]bool, len(r.cfg.Addrs)),
		unheard: len(r.cfg.Addrs),
	}
	c.shard = r.lat.shard(id)
	c.from, c.to = r.window()
	if c.own >= 0 && r.cfg.Rate == 0 {
		c.wake = make(chan struct{}, 1)
	}
	return c
}

// read runs the receive side until the connection ends.
func (c *client) read() {
	c.readDone(c.readLoop(c.conn))
}

// readDone ends the receive side, which stopped for err (nil: a clean end
// of stream): it publishes what the receiver counted and, unless the run
// is closing, keeps err as a disconnection.
func (c *client) readDone(err error) {
	defer c.r.readers.Done()
	if c.ws != nil && err != nil && !c.r.closing.Load() {
		c.conn.Close() // a WebSocket closed by the server, or broken: done with it
	}
	c.publish()
	c.flushLatencies()
	if !c.r.closing.Load() {
		if err == nil {
			err = io.EOF
		}
		c.readErr = err
	}
	c.done.Store(true)
}

// corrupted counts a message that cannot be identified.
func (c *client) corrupted() {
	c.chk.errs.Corrupted++
	c.errCount.Add(1)
	// It stands for some data message: count it, so that the drain ends
	// (its sequence number will be counted as lost too).
	c.accounted++
}

// handle checks one message body.
func (c *client) handle(b []byte) {
	h, st := c.r.codec.parse(b)
	if st == badHeader || (h.kind == kindData && int(h.sender) >= len(c.chk.next)) {
		c.corrupted()
		return
	}
	if h.kind == kindProbe {
		// Probe number n went through server n % len(Addrs).
		if s := int(h.sender) % len(c.heard); st == intact && !c.heard[s] {
			c.heard[s] = true
			if c.unheard--; c.unheard == 0 {
				c.r.registeredOne()
			}
		}
		return
	}
	switch c.chk.see(h.sender, h.seq) {
	case duplicate:
		c.errCount.Add(1)
		return
	case late:
		c.errCount.Add(1)
	}
	if c.accounted++; c.accounted-c.published >= publishEvery {
		c.publish()
	}
	own := int32(h.sender) == c.own
	if own {
		c.newAcks++
	}
	if st != intact {
		c.chk.errs.Corrupted++
		c.errCount.Add(1)
		return
	}
	if h.time >= c.from && h.time < c.to {
		c.recordLatency(c.at - h.time)
	}
	if c.at >= c.from && c.at < c.to {
		c.inWindow++
		if own {
			c.ownWindow++
		}
	}
}
