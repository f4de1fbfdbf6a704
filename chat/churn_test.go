package chat

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests of this file check how the server goes through churn: under a
// flood of clients that connect and close, which it cannot tell from
// half-closed ones, it holds at most Config.HalfCloseMax of them, closing
// the oldest gracefully to make room, and logs a count now and then
// instead of a line per client; once a crowd has left, it gives the
// memory back (Config.ReleaseMemory).

// TestHalfCloseMaxEvictsOldest: with two half-closed clients staying (the
// cap), a third one's end of stream closes the first gracefully, after
// everything queued to it; the other two stay and go on hearing the room.
func TestHalfCloseMaxEvictsOldest(t *testing.T) {
	runMatrixParallel(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = time.Hour // never, in this test
		cfg.HalfCloseMax = 2
		srv := startServer(t, cfg)
		b := srv.dial("b", keepReads)
		h := []*client{srv.dial("h0", keepReads), srv.dial("h1", keepReads), srv.dial("h2", keepReads)}
		srv.waitActive(4)

		// Each hi sends one message, then ends its stream; hi hears what
		// is sent after it, until it goes.
		var sent [][]byte
		for i, c := range h {
			m := encode(s.framing, "h"+strconv.Itoa(i)+", then an end of stream")
			c.send(m)
			sent = append(sent, m)
			if err := c.conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			for _, r := range append([]*client{b}, h[:i+1]...) {
				r.expect(concat(sent...)) // relayed before the end of stream is handled
			}
			if i < 2 {
				srv.waitStats("h"+strconv.Itoa(i)+" half-closed", func(st Stats) bool { return st.HalfClosed == int64(i+1) })
			}
		}

		// h0, the oldest, made room for h2: closed gracefully, after the
		// three messages queued to it.
		if err := h[0].waitEnd(); !errors.Is(err, io.EOF) {
			t.Fatalf("the oldest half-closed client's stream ended with %v; want a graceful end (EOF)", err)
		}
		h[0].expect(concat(sent...))
		st := srv.waitStats("h0 evicted", func(st Stats) bool { return st.HalfCloseEvicted == 1 && st.Active == 3 })
		if st.HalfClosed != 2 || st.SlowConsumers+st.BadInput+st.IdleTimeouts != 0 {
			t.Errorf("stats %+v; want h1 and h2 half-closed, no disconnect for cause", st)
		}

		// h1 and h2 stay, hearing the room.
		m := encode(s.framing, "b, to those who stayed")
		b.send(m)
		want := concat(append(sent, m)...)
		for _, r := range []*client{b, h[1], h[2]} {
			r.expect(want)
			if !r.isOpen() {
				t.Errorf("%s: its stream ended; want it to stay", r.name)
			}
		}
		if line := srv.waitLog("half-closed clients closed early", "closed=1"); !strings.Contains(line, "max=2") {
			t.Errorf("log line %q; want it to give the cap, max=2", line)
		}
	})
}

// TestHalfCloseMaxFlood: clients connect and close, one after another,
// many more than the cap. The server ends up holding the cap, having
// closed the rest early, and says so in a few log lines, not one per
// client.
func TestHalfCloseMaxFlood(t *testing.T) {
	const limit = 8
	n := scale(500, 100)
	runMatrixParallel(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = time.Hour // only the cap lets them go
		cfg.HalfCloseMax = limit
		srv := startServer(t, cfg)
		start := time.Now()
		for i := range n {
			nc, err := net.DialTimeout("tcp", srv.addr(), longWait)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			nc.Close()
		}
		// An evicted client leaves Active a moment after it is counted in
		// HalfCloseEvicted: wait for both.
		srv.waitStats(fmt.Sprintf("every client accepted, all but the cap closed, and the cap, %d, half-closed and held", limit), func(st Stats) bool {
			return st.Accepted == int64(n) && st.HalfCloseEvicted == int64(n-limit) &&
				st.HalfClosed == limit && st.Active == limit
		})

		// The log counts them all, in far fewer lines than clients.
		var lines []string
		srv.waitStats("the log to count every client closed early", func(Stats) bool {
			lines = srv.log.lines("half-closed clients closed early")
			return reportedClosed(t, lines) == n-limit
		})
		if most := int(time.Since(start)/eventEvery) + 1; len(lines) > most {
			t.Errorf("%d log lines for %d clients closed early in %v; want at most one per %v:\n%s",
				len(lines), n-limit, time.Since(start), eventEvery, strings.Join(lines, "\n"))
		}
	})
}

// reportedClosed adds up the closed=N of log lines.
func reportedClosed(t *testing.T, lines []string) int {
	t.Helper()
	sum := 0
	for _, line := range lines {
		_, v, ok := strings.Cut(line, " closed=")
		v, _, _ = strings.Cut(v, " ")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("log line %q: no closed=N count", line)
		}
		sum += n
	}
	return sum
}

// TestHalfCloseMaxNone: a negative HalfCloseMax holds every half-closed
// client; zero means DefaultHalfCloseMax.
func TestHalfCloseMaxNone(t *testing.T) {
	if got := (Config{}).withDefaults().HalfCloseMax; got != DefaultHalfCloseMax {
		t.Errorf("HalfCloseMax defaults to %d; want DefaultHalfCloseMax, %d", got, DefaultHalfCloseMax)
	}
	const n = 20
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = time.Hour
		cfg.HalfCloseMax = -1
		srv := startServer(t, cfg)
		for i := range n {
			nc, err := net.DialTimeout("tcp", srv.addr(), longWait)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			nc.Close()
		}
		st := srv.waitStats("every client half-closed", func(st Stats) bool { return st.HalfClosed == n })
		if st.HalfCloseEvicted != 0 || st.Active != n {
			t.Errorf("stats %+v; want all %d held, none closed early", st, n)
		}
	})
}

// TestReleaseMemory: once a crowd of clients has left, a server with
// ReleaseMemory gives the memory back (two forced collections) and says
// so.
func TestReleaseMemory(t *testing.T) {
	runMatrixParallel(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.HalfCloseTimeout = -1 // the release waits for no half-closed client
		cfg.ReleaseMemory = true
		srv := startServer(t, cfg)
		crowd := make([]*client, freeMinPeak+10)
		for i := range crowd {
			crowd[i] = srv.dial("c"+strconv.Itoa(i), noReads)
		}
		srv.waitActive(len(crowd))
		forced := forcedGCs()
		for _, c := range crowd {
			c.conn.Close()
		}
		srv.waitActive(0)
		line := srv.waitLog("memory released: the clients left")
		if !strings.Contains(line, "peak="+strconv.Itoa(len(crowd))) || !strings.Contains(line, "held=0") {
			t.Errorf("log line %q; want the peak, %d, and none held", line, len(crowd))
		}
		if n := forcedGCs() - forced; n < 2 {
			t.Errorf("%d forced collections while the server released memory; want at least 2", n)
		}
	})
}

// TestReleaseMemoryGathered: once a crowd of clients has gathered and no
// more come, a server with ReleaseMemory frees the garbage of their
// arrival, which an idle server would keep, and says so.
func TestReleaseMemoryGathered(t *testing.T) {
	runMatrixParallel(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.ReleaseMemory = true
		srv := startServer(t, cfg)
		forced := forcedGCs()
		crowd := make([]*client, freeMinPeak+10)
		for i := range crowd {
			crowd[i] = srv.dial("c"+strconv.Itoa(i), noReads)
		}
		srv.waitActive(len(crowd))
		line := srv.waitLog("memory released: the clients gathered")
		want := strconv.Itoa(len(crowd))
		if !strings.Contains(line, "peak="+want) || !strings.Contains(line, "held="+want) {
			t.Errorf("log line %q; want the peak and the clients held, %s", line, want)
		}
		if n := forcedGCs() - forced; n < 2 {
			t.Errorf("%d forced collections while the server released memory; want at least 2", n)
		}
	})
}

// forcedGCs returns how many garbage collections the program forced.
func forcedGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
