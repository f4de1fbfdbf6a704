package chat

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
)

// The server's log of repeated events (a client disconnected for cause, a
// connection refused, a half-closed client evicted): under attack these
// come by the thousand, and a line each would make the log itself the
// outage.

// An eventKind is a kind of repeated event, logged by an eventLog.
type eventKind uint8

// Kinds of events.
const (
	evSlowConsumer     eventKind = iota // a full send queue, or WriteTimeout
	evBadInput                          // malformed or oversized input
	evMessageTimeout                    // a message not complete within MessageTimeout
	evIdle                              // IdleTimeout
	evResetMidMessage                   // a reset with a message half-sent (bad input)
	evClosedMidMessage                  // an end of stream with a message half-sent
	evConnError                         // a connection that failed otherwise
	evRefusedMaxConns                   // refused by MaxConns
	evRefusedPerIP                      // refused by MaxConnsPerIP
	evRefusedRate                       // refused by AcceptRate
	evHalfCloseEvicted                  // a half-closed client closed early, for HalfCloseMax
	evTLSHandshake                      // a TLS client's handshake failed (Config.TLS)
	evWSHandshake                       // a WebSocket client's request failed or timed out (Config.WSAddr)
	evWSRefused                         // a request to the WebSocket listener answered with an error
	numEventKinds
)

// eventEvery is how often at most the server logs events of one kind.
const eventEvery = time.Second

// maxExamples is how many peers a line counting events names at most.
const maxExamples = 3

// An eventLog logs events of each kind as they come while they are rare,
// and counts them while they are frequent: the first event of a kind is
// logged at once, with its peer and detail; those that come within
// eventEvery of the last line of their kind are only counted, the count
// logged in one line when that interval is over, with a few examples of
// peers. So there is at most one line per kind per interval, and a kind
// that falls quiet has its events logged at once again. Each counted
// event is also logged at Debug, in full, for a log that wants every one.
//
// Every line carries the kind's message and attributes, and the number of
// events it stands for (count, or the kind's name of it): the counts of a
// kind's lines add up to its events. No goroutine is started per event:
// each kind has a timer, armed while events of it are counted and not
// yet logged. flush logs those at once and makes every later event
// logged at once (Close calls it).
type eventLog struct {
	log   *slog.Logger
	every time.Duration
	kinds [numEventKinds]eventCounter
}

// An eventCounter is the state of one kind of event.
type eventCounter struct {
	msg      string      // the log message
	countKey string      // the attribute counting events ("count")
	attrs    []slog.Attr // of every line of the kind
	summary  []slog.Attr // of the lines that count events, after attrs

	timer *time.Timer // logs what is counted, eventEvery after the last line

	mu       sync.Mutex // guards the fields below
	last     time.Time  // when a line of the kind was last logged
	n        int64      // events counted since, not yet logged
	examples []string   // peers of up to maxExamples of them
	total    int64      // events of the kind, ever
	flushed  bool       // flush was called: log every event at once
}

// newEventLog returns an eventLog of the server with cfg (its defaults
// set), logging each kind at most once every interval.
func newEventLog(log *slog.Logger, cfg Config, every time.Duration) *eventLog {
	l := &eventLog{log: log, every: every}
	disc := func(k eventKind, reason string, summary ...slog.Attr) {
		l.kinds[k] = eventCounter{msg: "client disconnected", attrs: []slog.Attr{slog.String("reason", reason)}, summary: summary}
	}
	disc(evSlowConsumer, reasonSlowConsumer)
	disc(evBadInput, reasonBadInput)
	disc(evMessageTimeout, reasonBadInput, slog.String("err", errMessageTimeout.Error()),
		slog.Duration("message_timeout", cfg.MessageTimeout))
	disc(evIdle, reasonIdle, slog.Duration("idle_timeout", cfg.IdleTimeout))
	disc(evResetMidMessage, "reset mid-message")
	disc(evClosedMidMessage, "closed mid-message")
	disc(evConnError, "connection error")
	refused := func(k eventKind, reason string, attrs ...slog.Attr) {
		l.kinds[k] = eventCounter{msg: "connection refused", attrs: append([]slog.Attr{slog.String("reason", reason)}, attrs...)}
	}
	refused(evRefusedMaxConns, "max-conns", slog.Int("max", cfg.MaxConns))
	refused(evRefusedPerIP, "max-conns-per-ip", slog.Int("max", cfg.MaxConnsPerIP))
	refused(evRefusedRate, "accept-rate", slog.Float64("rate", cfg.AcceptRate), slog.Int("burst", cfg.AcceptBurst))
	l.kinds[evHalfCloseEvicted] = eventCounter{
		msg: "half-closed clients closed early: too many stayed", countKey: "closed",
		attrs: []slog.Attr{slog.Int("max", cfg.HalfCloseMax), slog.Duration("half_close_timeout", cfg.HalfCloseTimeout)},
	}
	l.kinds[evTLSHandshake] = eventCounter{msg: "TLS handshake failed", attrs: []slog.Attr{slog.Duration("timeout", cfg.TLSHandshakeTimeout)}}
	l.kinds[evWSHandshake] = eventCounter{msg: "WebSocket request failed", attrs: []slog.Attr{slog.Duration("timeout", cfg.WSHandshakeTimeout)}}
	l.kinds[evWSRefused] = eventCounter{msg: "WebSocket request refused"}
	for k := range l.kinds {
		c := &l.kinds[k]
		if c.countKey == "" {
			c.countKey = "count"
		}
		c.timer = time.AfterFunc(math.MaxInt64, func() { l.report(eventKind(k)) })
	}
	return l
}

// add records an event of kind k about peer ("" when there is none), with
// detail: logged at once if the kind was quiet, else counted.
func (l *eventLog) add(k eventKind, peer string, detail ...slog.Attr) {
	c := &l.kinds[k]
	now := time.Now()
	c.mu.Lock()
	c.total++
	total := c.total
	if c.flushed || c.n == 0 && now.Sub(c.last) >= l.every {
		c.last = now
		c.mu.Unlock()
		l.line(slog.LevelWarn, c, peer, detail, 1, total, nil)
		return
	}
	c.n++
	if peer != "" && len(c.examples) < maxExamples {
		c.examples = append(c.examples, peer)
	}
	if c.n == 1 {
		c.timer.Reset(c.last.Add(l.every).Sub(now))
	}
	c.mu.Unlock()
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.line(slog.LevelDebug, c, peer, detail, 1, total, nil)
	}
}

// report logs the events of kind k counted since its last line, if any:
// the timer's function, and flush's.
func (l *eventLog) report(k eventKind) {
	c := &l.kinds[k]
	c.mu.Lock()
	n, examples, total := c.n, c.examples, c.total
	if n > 0 {
		c.n, c.examples = 0, nil
		c.last = time.Now()
	}
	c.mu.Unlock()
	if n > 0 {
		l.line(slog.LevelWarn, c, "", c.summary, n, total, examples)
	}
}

// flush logs every event counted and not yet logged, and has every later
// event logged at once: the server is closing, and no timer is to log
// after that.
func (l *eventLog) flush() {
	for k := range l.kinds {
		c := &l.kinds[k]
		c.mu.Lock()
		c.flushed = true
		c.mu.Unlock()
		c.timer.Stop()
		l.report(eventKind(k)) // what a timer stopped (or running) has not logged
	}
}

// line logs one line of kind c: one event of peer with detail (n 1, no
// examples), or n events counted, with examples of their peers.
func (l *eventLog) line(level slog.Level, c *eventCounter, peer string, detail []slog.Attr, n, total int64, examples []string) {
	attrs := make([]slog.Attr, 0, 4+len(c.attrs)+len(detail))
	if peer != "" {
		attrs = append(attrs, slog.String("peer", peer))
	}
	attrs = append(attrs, c.attrs...)
	attrs = append(attrs, detail...)
	attrs = append(attrs, slog.Int64(c.countKey, n))
	if len(examples) > 0 {
		attrs = append(attrs, slog.String("examples", strings.Join(examples, ",")))
	}
	if n > 1 || len(examples) > 0 || total > 1 {
		attrs = append(attrs, slog.Int64("total", total))
	}
	l.log.LogAttrs(context.Background(), level, c.msg, attrs...)
}
