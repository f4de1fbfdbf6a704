package load

import (
	"time"
)

// maxBatch bounds the messages an open-loop sender writes at once when it
// has fallen behind its schedule.
const maxBatch = 256

// closedLoop sends until stop is closed, keeping at most window messages
// unacknowledged; the messages that the acknowledgements allow go out in
// one write.
func (c *client) closedLoop(stop <-chan struct{}, window int) {
	cd := c.r.codec
	buf := make([]byte, 0, window*cd.wire)
	var seq uint64
	for {
		select {
		case <-stop:
			return
		default:
		}
		room := window - int(seq-uint64(c.acks.Load()))
		if room <= 0 {
			select {
			case <-c.wake:
			case <-stop:
				return
			}
			continue
		}
		h := header{kind: kindData, sender: uint32(c.own), seq: seq, time: c.r.now()}
		buf = buf[:0]
		for range room {
			buf = c.appendMsg(buf, h)
			h.seq++
		}
		if !c.write(buf, &seq) {
			return
		}
	}
}

// openLoop sends rate messages per second, starting at t0 (nanoseconds on
// the run's clock), until the end of the measured window; stop only cuts
// a wait short. Each message carries its scheduled time, and every message
// scheduled before the end is sent, late if need be: the count sent does
// not depend on how the sender was scheduled.
func (c *client) openLoop(stop <-chan struct{}, t0 int64, rate float64) {
	cd := c.r.codec
	interval := float64(time.Second) / rate
	due := func(seq uint64) int64 { return t0 + int64(float64(seq)*interval) }
	buf := make([]byte, 0, maxBatch*cd.wire)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var seq uint64
	for {
		now := c.r.now()
		_, end := c.r.window()
		if due(seq) >= end {
			return
		}
		if wait := due(seq) - now; wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-timer.C:
			case <-stop: // the window ended, maybe early: look again
				stop = nil
			}
			continue
		}
		buf = buf[:0]
		h := header{kind: kindData, sender: uint32(c.own)}
		for h.seq = seq; h.seq-seq < maxBatch; h.seq++ {
			h.time = due(h.seq)
			if h.time > now || h.time >= end {
				break
			}
			buf = c.appendMsg(buf, h)
		}
		if !c.write(buf, &seq) {
			return
		}
	}
}

// write writes buf, whole messages, and advances *seq past those written.
func (c *client) write(buf []byte, seq *uint64) bool {
	n, err := c.conn.Write(buf)
	*seq += uint64(n / c.r.codec.wire)
	c.sent.Store(int64(*seq))
	if err != nil {
		if !c.r.closing.Load() {
			c.sendErr = err
		}
		return false
	}
	return true
}
