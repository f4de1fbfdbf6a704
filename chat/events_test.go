package chat

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestEventLog returns an eventLog of the default Config logging at
// level into a buffer.
func newTestEventLog(level slog.Level, every time.Duration) (*eventLog, *logBuffer) {
	lb := new(logBuffer)
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: level}))
	return newEventLog(log, Config{}.withDefaults(), every), lb
}

// TestEventBurst logs 10,000 events of one kind at once: a few lines,
// whose counts add up to 10,000, the first naming its peer and detail,
// the next a few examples.
func TestEventBurst(t *testing.T) {
	const n = 10000
	l, lb := newTestEventLog(slog.LevelInfo, eventEvery)
	defer l.flush()
	start := time.Now()
	for i := range n {
		l.add(evSlowConsumer, fmt.Sprintf("192.0.2.1:%d", i), slog.String("err", "detail"))
	}
	var lines []string
	deadline := time.Now().Add(longWait)
	for {
		lines = lb.lines("client disconnected")
		if sumCounts(t, lines, "count") == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, the log counts %d of %d events:\n%s", longWait, sumCounts(t, lines, "count"), n, lb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if most := int(time.Since(start)/eventEvery) + 1; len(lines) > most || len(lines) > 3 {
		t.Errorf("%d log lines for %d events in %v:\n%s", len(lines), n, time.Since(start), lb.String())
	}
	if first := lines[0]; !strings.Contains(first, "peer=192.0.2.1:0 ") || !strings.Contains(first, `reason="slow consumer"`) ||
		!strings.Contains(first, "err=detail") || !strings.Contains(first, "count=1") {
		t.Errorf("first line %q; want the first event's peer, reason and detail", first)
	}
	if next := lines[1]; !strings.Contains(next, "examples=192.0.2.1:1,192.0.2.1:2,192.0.2.1:3 ") ||
		!strings.Contains(next, fmt.Sprint("total=", n)) || strings.Contains(next, "peer=") {
		t.Errorf("second line %q; want 3 examples and the total", next)
	}
	if got := len(lb.lines("level=WARN")); got != len(lines) {
		t.Errorf("%d WARN lines; want the %d counting the events:\n%s", got, len(lines), lb.String())
	}
}

// TestEventConcurrent logs events of two kinds from many goroutines: the
// counts of each add up.
func TestEventConcurrent(t *testing.T) {
	const goroutines, each = 8, 2000
	l, lb := newTestEventLog(slog.LevelInfo, 20*time.Millisecond)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				k := evBadInput
				if i%2 == 0 {
					k = evRefusedPerIP
				}
				l.add(k, fmt.Sprintf("192.0.2.%d:%d", g, i))
				if i%500 == 0 {
					time.Sleep(30 * time.Millisecond) // let some intervals pass
				}
			}
		})
	}
	wg.Wait()
	l.flush()
	for _, msg := range []string{"client disconnected", "connection refused"} {
		if got := sumCounts(t, lb.lines(msg), "count"); got != goroutines*each/2 {
			t.Errorf("%q lines count %d events; want %d", msg, got, goroutines*each/2)
		}
	}
}

// TestEventFlush checks that flush logs what is counted at once, and that
// events after it are logged at once.
func TestEventFlush(t *testing.T) {
	l, lb := newTestEventLog(slog.LevelInfo, time.Hour)
	for i := range 5 {
		l.add(evHalfCloseEvicted, fmt.Sprint("192.0.2.1:", i))
	}
	if lines := lb.lines("half-closed clients closed early"); len(lines) != 1 || !strings.Contains(lines[0], "closed=1") {
		t.Fatalf("before flush: lines %q; want the first, closed=1", lines)
	}
	l.flush()
	lines := lb.lines("half-closed clients closed early")
	if len(lines) != 2 || !strings.Contains(lines[1], "closed=4") || !strings.Contains(lines[1], "max=1024") {
		t.Fatalf("after flush: lines %q; want a second, closed=4, with the cap", lines)
	}
	l.add(evHalfCloseEvicted, "192.0.2.1:99")
	if lines := lb.lines("half-closed clients closed early", "peer=192.0.2.1:99 "); len(lines) != 1 {
		t.Errorf("an event after flush: lines %q; want it logged at once", lb.String())
	}
}

// TestEventQuiet checks that an event of a kind quiet for an interval is
// logged at once, with its peer, and that a count comes at most one
// interval after the line before.
func TestEventQuiet(t *testing.T) {
	const every = 50 * time.Millisecond
	l, lb := newTestEventLog(slog.LevelInfo, every)
	defer l.flush()
	l.add(evIdle, "192.0.2.1:1")
	last := time.Now()
	l.add(evIdle, "192.0.2.1:2") // counted
	waitLines(t, lb, "client disconnected", 2)
	if took := time.Since(last); took < every*9/10 {
		t.Errorf("the count was logged %v after the line before; want an interval, %v", took, every)
	}
	for time.Since(last) < 3*every {
		time.Sleep(every) // quiet: the next is logged at once
	}
	l.add(evIdle, "192.0.2.1:3")
	lines := waitLines(t, lb, "client disconnected", 3)
	if !strings.Contains(lines[2], "peer=192.0.2.1:3 ") || !strings.Contains(lines[2], "total=3") {
		t.Errorf("lines %q; want the third event logged at once, with its peer", lines)
	}
}

// TestEventDebug checks that at Debug every event counted has a line of
// its own, besides the lines at Warn.
func TestEventDebug(t *testing.T) {
	l, lb := newTestEventLog(slog.LevelDebug, time.Hour)
	for i := range 10 {
		l.add(evBadInput, fmt.Sprint("192.0.2.1:", i), slog.String("err", "bad"))
	}
	l.flush()
	if got := len(lb.lines("level=DEBUG", "client disconnected", "err=bad", "count=1")); got != 9 {
		t.Errorf("%d DEBUG lines; want 9, one per event counted:\n%s", got, lb.String())
	}
	if got := sumCounts(t, lb.lines("level=WARN"), "count"); got != 10 {
		t.Errorf("WARN lines count %d events; want 10:\n%s", got, lb.String())
	}
}

// waitLines waits until the log has n lines containing msg, and returns
// them.
func waitLines(t *testing.T, lb *logBuffer, msg string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for {
		if lines := lb.lines(msg); len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %d lines %q; log:\n%s", longWait, n, msg, lb.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}
