package load

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"

	"cport.dev/cport/chat"
)

// A stampedReader notes the run's clock when each read returns: the
// receive time of the messages that the read completes.
type stampedReader struct {
	rd io.Reader
	r  *run
	at int64
}

func (s *stampedReader) Read(p []byte) (int, error) {
	n, err := s.rd.Read(p)
	s.at = s.r.now()
	return n, err
}

// A client is one connection: a receiver that checks everything it gets
// and, for senders, the sending side.
type client struct {
	r      *run
	id     int
	conn   net.Conn
	server int   // the index of its server in Config.Addrs
	own    int32 // the sender index of this client, or -1

	// The receive side belongs to the reader goroutine until it returns.
	chk       checker
	lat       []int64       // latencies of messages carrying a time inside the window, to record (flushLatencies)
	shard     *latencyShard // where they are recorded
	in        stampedReader // the connection, with the time of the last read
	heard     []bool        // by server: a probe sent through it arrived
	unheard   int           // servers whose probe has not arrived yet
	accounted int64         // data messages received, duplicates excepted
	inWindow  int64         // of those, received inside the measured window
	ownWindow int64         // of those, this sender's own echoes
	readErr   error         // why reading stopped, if the run did not stop it

	// Written by the reader goroutine, read by others while it runs.
	progress atomic.Int64 // accounted
	errCount atomic.Int64 // duplicated + reordered + corrupted so far
	done     atomic.Bool  // the reader returned

	// Senders only. acks is written by the reader (own echoes received,
	// duplicates excepted), read by the sender; wake tells the sender that
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
	c.in = stampedReader{rd: conn, r: r}
	if c.own >= 0 && r.cfg.Rate == 0 {
		c.wake = make(chan struct{}, 1)
	}
	return c
}

// read runs the receive side until the connection ends.
func (c *client) read() {
	defer c.r.readers.Done()
	err := c.readLoop(&c.in)
	c.flushLatencies()
	if !c.r.closing.Load() {
		if err == nil {
			err = io.EOF
		}
		c.readErr = err
	}
	c.done.Store(true)
}

// readLoop cuts what arrives from rd into messages and checks each one,
// taking c.in.at as the time they arrived. It returns when rd fails (a nil
// error for a clean end of stream).
func (c *client) readLoop(rd io.Reader) error {
	br := bufio.NewReaderSize(rd, c.r.bufSize)
	if c.r.codec.framing == chat.Line {
		for {
			b, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull { // far longer than any message: skip the line
				c.corrupted()
				for err == bufio.ErrBufferFull {
					_, err = br.ReadSlice('\n')
				}
				if err == nil {
					continue
				}
			}
			if err != nil {
				return eofNil(err)
			}
			c.handle(b[:len(b)-1])
			if br.Buffered() == 0 {
				c.flushLatencies() // the next read may block
			}
		}
	}
	for {
		hdr, err := br.Peek(4)
		if err != nil {
			return eofNil(err)
		}
		n := int(binary.BigEndian.Uint32(hdr))
		if 4+n > br.Size() { // far longer than any message: skip the frame
			c.corrupted()
			if _, err := br.Discard(4 + n); err != nil {
				return eofNil(err)
			}
			continue
		}
		b, err := br.Peek(4 + n)
		if err != nil {
			return eofNil(err)
		}
		c.handle(b[4:])
		br.Discard(4 + n)
		if br.Buffered() == 0 {
			c.flushLatencies() // the next read may block
		}
	}
}

func eofNil(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// corrupted counts a message that cannot be identified.
func (c *client) corrupted() {
	c.chk.errs.Corrupted++
	c.errCount.Add(1)
	// It stands for some data message: count it, so that the drain ends
	// (its sequence number will be counted as lost too).
	c.accounted++
	c.progress.Store(c.accounted)
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
	c.accounted++
	c.progress.Store(c.accounted)
	own := int32(h.sender) == c.own
	if own {
		c.acks.Add(1)
		if c.wake != nil {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
	if st != intact {
		c.chk.errs.Corrupted++
		c.errCount.Add(1)
		return
	}
	now := c.in.at
	from, to := c.r.window()
	if h.time >= from && h.time < to {
		c.recordLatency(now - h.time)
	}
	if now >= from && now < to {
		c.inWindow++
		if own {
			c.ownWindow++
		}
	}
}
