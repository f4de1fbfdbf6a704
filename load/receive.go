package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"cport.dev/cport/chat"
)

// publishEvery is how many messages a receiver checks at most between two
// publications of its counters (publish).
const publishEvery = 256

// An inbox is a receiver's read buffer. Messages are checked where they
// lie, never copied; the bytes of an incomplete message move to the front
// of the buffer before the next read.
type inbox struct {
	buf        []byte
	start, end int    // buf[start:end] is received and not consumed
	skip       uint64 // bytes of an oversized frame still to drop
	skipLine   bool   // dropping an oversized line, up to its '\n'
}

// readLoop receives from conn until the connection ends, checking every
// message. It reads the socket directly when conn allows it (see rawLoop),
// and otherwise through conn's Read. It returns a nil error for a clean end
// of stream.
func (c *client) readLoop(conn io.Reader) error {
	if c.in.buf == nil {
		if err := c.openInbox(); err != nil {
			return err
		}
	}
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			if done, err := c.rawLoop(rc); done {
				return err
			}
		}
	}
	for {
		n, err := conn.Read(c.in.buf[c.in.end:])
		if n > 0 {
			if err := c.received(n); err != nil {
				return err
			}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.r.closing.Load() { // woken by stopSkipping
			if err := c.conn.SetReadDeadline(time.Time{}); err != nil {
				return err
			}
			continue // a TLS client's stream survives a read's timeout
		}
		if err != nil {
			return eofNil(err)
		}
	}
}

// openInbox makes the receiver's read buffer and, for a WebSocket client,
// checks the frames that came with the handshake's response. An error ends
// the stream, as in received.
func (c *client) openInbox() error {
	c.in.buf = make([]byte, c.r.bufSize)
	if c.ws != nil {
		c.ws.p.max = len(c.in.buf) - wsMaxHeader
		for p := c.ws.pending; len(p) > 0; {
			k := copy(c.in.buf[c.in.end:], p)
			p = p[k:]
			if err := c.received(k); err != nil {
				return err
			}
		}
		c.ws.pending = nil
	}
	return nil
}

func eofNil(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// received takes the n bytes that a read has just appended to the inbox,
// at the run's current time: it checks every whole message among them,
// keeps the remainder for the next read, and publishes the counters. An
// error ends the stream: the server closed the WebSocket, or broke its
// protocol.
func (c *client) received(n int) error {
	c.at = c.r.now() // the receive time of every message that this read completes
	c.from, c.to = c.r.window()
	if c.at >= c.from && c.at < c.to {
		c.windowReads++
	}
	in := &c.in
	in.end += n
	var err error
	switch {
	case c.ws != nil:
		err = c.scanWS()
	case c.r.codec.framing == chat.Line:
		c.scanLines()
	default:
		c.scanFrames()
	}
	switch {
	case in.start == in.end:
		in.start, in.end = 0, 0
	case in.start > 0: // a partial message: to the front
		in.end = copy(in.buf, in.buf[in.start:in.end])
		in.start = 0
	}
	c.publish()
	return err
}

// scanFrames checks every whole frame in the inbox.
func (c *client) scanFrames() {
	in := &c.in
	for {
		if in.skip > 0 {
			k := min(in.skip, uint64(in.end-in.start))
			in.start += int(k)
			in.skip -= k
			if in.skip > 0 {
				return
			}
		}
		if in.end-in.start < 4 {
			return
		}
		n := uint64(binary.BigEndian.Uint32(in.buf[in.start:]))
		if 4+n > uint64(len(in.buf)) { // far longer than any message: skip the frame
			c.corrupted()
			in.skip = 4 + n
			continue
		}
		if uint64(in.end-in.start) < 4+n {
			return
		}
		body := in.start + 4
		in.start = body + int(n)
		c.handle(in.buf[body:in.start])
	}
}

// scanLines checks every whole line in the inbox.
func (c *client) scanLines() {
	in := &c.in
	for {
		i := bytes.IndexByte(in.buf[in.start:in.end], '\n')
		if in.skipLine {
			if i < 0 {
				in.start = in.end
				return
			}
			in.start += i + 1
			in.skipLine = false
			continue
		}
		if i < 0 {
			if in.start == 0 && in.end == len(in.buf) { // far longer than any message: skip the line
				c.corrupted()
				in.skipLine = true
				in.start = in.end
			}
			return
		}
		line := in.buf[in.start : in.start+i]
		in.start += i + 1
		c.handle(line)
	}
}

// publish makes the receiver's counters visible to the rest of the run:
// its progress and, for a sender, the acknowledgements of its own
// messages. Latencies are recorded by batches of their own
// (flushLatencies).
func (c *client) publish() {
	c.progress.Store(c.accounted)
	c.published = c.accounted
	if c.newAcks > 0 {
		c.acks.Add(c.newAcks)
		c.newAcks = 0
		if c.wake != nil {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}
