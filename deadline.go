package cport

import (
	"os"
	"time"
)

// connExtra is what few of a port's connections need (Conn.ext), made at
// the first deadline, graceful close or adaptation that needs it: the
// connection's entries in its port's timer heap, and its net.Conn
// adapter. The entries' heap fields are guarded by timers.mu, the rest by
// Conn.mu.
type connExtra struct {
	r, w   deadline    // the read and the write deadline
	linger lingerTimer // a graceful close's limit (Config.CloseTimeout)
	// nc is the adapter that takes the connection's completions instead
	// of the port's queue (Conn.NetConn); set once, never cleared.
	nc *NetConn
	// err is the failure that broke the connection (a send's), if any:
	// set once, never cleared. Few connections break, and an idle one
	// pays for every word of Conn.
	err error
}

// A deadline is a connection's read or write deadline.
type deadline struct {
	e     timerEntry
	c     *Conn
	write bool
	set   bool  // a deadline is set (Conn.mu)
	when  int64 // when it passes, on the port's clock (Conn.mu)
}

// lingerTimer resets a connection whose graceful close took longer than
// Config.CloseTimeout.
type lingerTimer struct {
	e timerEntry
	c *Conn
}

func (l *lingerTimer) expire() { l.c.lingerExpired() }

// errLocked returns the failure that broke c, if any (c.mu held).
func (c *Conn) errLocked() error {
	if c.ext == nil {
		return nil
	}
	return c.ext.err
}

// extLocked returns c's extra parts, making them at the first call.
func (c *Conn) extLocked() *connExtra {
	if c.ext == nil {
		tm := &connExtra{}
		tm.r = deadline{c: c}
		tm.w = deadline{c: c, write: true}
		tm.linger.c = c
		tm.r.e.f, tm.w.e.f, tm.linger.e.f = &tm.r, &tm.w, &tm.linger
		c.ext = tm
	}
	return c.ext
}

// passed reports whether the deadline is set and has passed (Conn.mu).
func (d *deadline) passed(p *Port) bool {
	return d.set && p.timers.now() >= d.when
}

// SetDeadline sets the read and write deadlines, as SetReadDeadline and
// SetWriteDeadline do.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the time by which receives must complete, as
// net.Conn's: a zero t clears it, and a later call replaces it.
//
// When it passes, the receive in progress (Recv, RecvMulti) completes with
// an *OpError that errors.Is matches to os.ErrDeadlineExceeded, and later
// calls of Recv and RecvMulti return that error at once, until the
// deadline is moved or cleared; a t in the past does so at once. A
// multishot receive whose completion is out ends with that error after
// its release, once what it had received before the deadline is
// delivered. The connection itself stays usable: bytes that arrive after
// the deadline are not lost, but wait (holding a receive buffer, the
// engine not reading more) for the next receive, which delivers them
// first, in order.
//
// Deadlines wait in the port's one timer heap (see Port.Timer): a
// connection costs no goroutine or runtime timer for them. It returns
// ErrClosed once c is closed.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(t, false) }

// SetWriteDeadline sets the time by which sends must be written, as
// net.Conn's: a zero t clears it, and a later call replaces it.
//
// When it passes, the messages queued by Send and not yet taken by a
// write complete with an *OpError that errors.Is matches to
// os.ErrDeadlineExceeded (those of SendQuiet are dropped, without a
// word), and later calls of Send and SendQuiet return that error at once,
// nothing queued, until the deadline is moved or cleared; a t in the past
// does so at once. A write already in the kernel cannot be recalled: the
// messages it carries, and one whose writing has begun, are still written
// whole and complete as usual (or with the write's error, or
// ErrCanceled if the connection is closed first). So the peer never reads
// part of a message, and the connection stays usable: once the deadline
// is moved or cleared, sends go on. A peer that does not read at all
// holds the write in flight: Close (with Config.CloseTimeout) or Abort
// ends it.
//
// It returns ErrClosed once c is closed.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, true) }

func (c *Conn) setDeadline(t time.Time, write bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	tm := c.extLocked()
	d := &tm.r
	if write {
		d = &tm.w
	}
	if t.IsZero() {
		d.set = false
		c.mu.Unlock()
		c.p.timers.remove(&d.e)
		return nil
	}
	d.set, d.when = true, c.p.timers.at(t)
	var due []Completion
	passed := d.when <= c.p.timers.now()
	if passed {
		c.p.timers.remove(&d.e)
		due = c.expireLocked(d.write)
	} else {
		c.p.timers.schedule(&d.e, d.when) // a closed port's Close closes c
	}
	nc := c.netConnLocked()
	c.mu.Unlock()
	c.pushAll(nc, due)
	if nc != nil && write && passed {
		nc.writeDeadlinePassed()
	}
	return nil
}

// expire fails what the deadline bounds, unless it was moved or cleared
// since the heap let it go, or the connection is closed.
func (d *deadline) expire() {
	c := d.c
	c.mu.Lock()
	if c.closed || !d.passed(c.p) {
		c.mu.Unlock()
		return
	}
	due := c.expireLocked(d.write)
	nc := c.netConnLocked()
	c.mu.Unlock()
	c.pushAll(nc, due)
	if nc != nil && d.write {
		// A write the kernel has taken does not fail: the adapter's
		// Write, which waits for it, returns at the deadline all the same.
		nc.writeDeadlinePassed()
	}
}

// expireLocked fails what the passed deadline bounds, returning the
// completions to push once c.mu is unlocked.
func (c *Conn) expireLocked(write bool) []Completion {
	if write {
		// What a write has taken is the kernel's: the messages in flight,
		// and one partly written, which is written whole.
		from := int(c.inflight)
		if from == 0 && c.sendOff > 0 {
			from = 1
		}
		if from >= len(c.sendq) {
			return nil
		}
		// The engine, asked to Flush, may find the queue empty: it
		// reports a write of nothing (see engine.ConnOwner.SendBatch).
		return c.failSendsLocked(from, c.opError("send", os.ErrDeadlineExceeded), nil)
	}
	if !c.recvArmed {
		return nil
	}
	r := recvResult{err: os.ErrDeadlineExceeded}
	if c.recvOut && c.recvMulti {
		// The end waits behind what was received before the deadline.
		c.pushBacklogLocked(r)
		c.recvArmed, c.recvEnding = false, true
		return nil
	}
	return []Completion{c.recvCompletionLocked(r)}
}
