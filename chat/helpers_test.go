package chat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cport.dev/cport"
)

// longWait bounds every wait of the tests. It is generous on purpose: the
// tests run on loaded machines and under the race detector, and they never
// assert on speed, only that things happen eventually.
const longWait = 30 * time.Second

// raceEnabled is set by race_test.go when the race detector is on; the
// heaviest tests shrink their volume then.
var raceEnabled bool

// allFramings lists the framings every relay test runs with.
var allFramings = []Framing{Raw, Line, Frame}

// scale returns full normally, and small under -short or the race detector.
func scale(full, small int) int {
	if testing.Short() || raceEnabled {
		return small
	}
	return full
}

// Backends ---------------------------------------------------------------

var (
	backendsOnce  sync.Once
	backendsFound []string
	backendsNotes []string
)

// testBackends returns the cport backends of this build that can run here
// (cport.Open succeeds), restricted to the comma-separated list in
// $CPORT_BACKENDS when it is set. It skips the test if there is none.
func testBackends(tb testing.TB) []string {
	tb.Helper()
	backendsOnce.Do(func() {
		names := cport.Backends()
		if env := strings.TrimSpace(os.Getenv("CPORT_BACKENDS")); env != "" {
			var keep []string
			for _, n := range strings.Split(env, ",") {
				n = strings.TrimSpace(n)
				switch {
				case n == "":
				case !slices.Contains(names, n):
					backendsNotes = append(backendsNotes, fmt.Sprintf("CPORT_BACKENDS names %q, which this build does not have (it has %v)", n, names))
				default:
					keep = append(keep, n)
				}
			}
			names = keep
		}
		for _, n := range names {
			p, err := cport.Open(cport.Config{Backend: n})
			if err != nil {
				backendsNotes = append(backendsNotes, fmt.Sprintf("backend %q cannot run here: %v", n, err))
				continue
			}
			p.Close()
			backendsFound = append(backendsFound, n)
		}
	})
	for _, note := range backendsNotes {
		tb.Log(note)
	}
	if len(backendsFound) == 0 {
		tb.Skip("no cport backend can run here")
	}
	return backendsFound
}

// A setup is one combination the relay tests run with.
type setup struct {
	backend string
	framing Framing
}

// config returns a Config for s listening on a free loopback port. A
// client that closes is let go after shortHalfClose.
func (s setup) config() Config {
	return Config{Addr: "127.0.0.1:0", Backend: s.backend, Framing: s.framing, HalfCloseTimeout: shortHalfClose}
}

// shortHalfClose is the HalfCloseTimeout of the tests: the server cannot
// tell a client that closed from one that half-closed until it writes to
// it, and tests that wait for a client that closed to be gone would wait
// DefaultHalfCloseTimeout each time.
const shortHalfClose = 20 * time.Millisecond

// runMatrix runs test as a subtest for every usable backend and each of
// the framings.
func runMatrix(t *testing.T, framings []Framing, test func(t *testing.T, s setup)) {
	t.Helper()
	for _, b := range testBackends(t) {
		for _, f := range framings {
			s := setup{backend: b, framing: f}
			t.Run(b+"/"+f.String(), func(t *testing.T) { test(t, s) })
		}
	}
}

// runMatrixParallel is runMatrix with the subtests run in parallel, for
// tests that mostly wait (idle timeouts): they are light, and waiting in
// turn for every backend and framing would add up.
func runMatrixParallel(t *testing.T, framings []Framing, test func(t *testing.T, s setup)) {
	t.Helper()
	runMatrix(t, framings, func(t *testing.T, s setup) {
		t.Parallel()
		test(t, s)
	})
}

// Log capture -------------------------------------------------------------

// logBuffer collects a server's log; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the lines logged that contain every one of subs.
func (l *logBuffer) lines(subs ...string) []string {
	var found []string
	for line := range strings.Lines(l.String()) {
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			found = append(found, strings.TrimSuffix(line, "\n"))
		}
	}
	return found
}

// tail returns the last n lines logged.
func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimSuffix(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Servers -----------------------------------------------------------------

// A testServer is a Server running in the background for one test, with
// its log captured. It is closed when the test ends.
type testServer struct {
	*Server
	tb        testing.TB
	log       *logBuffer
	serveDone chan struct{}
	serveErr  error
}

// startServer starts a server with cfg (Addr defaults to a free loopback
// port, Logger is replaced by a capture) and closes it when the test ends,
// checking that Serve returned nil.
func startServer(tb testing.TB, cfg Config) *testServer {
	tb.Helper()
	return startServerLevel(tb, cfg, slog.LevelInfo)
}

// startServerLevel is startServer capturing the log from level on: at
// Debug, every event the log counts (eventLog) has a line of its own.
func startServerLevel(tb testing.TB, cfg Config, level slog.Level) *testServer {
	tb.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	lb := new(logBuffer)
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: level}))
	srv, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	ts := &testServer{Server: srv, tb: tb, log: lb, serveDone: make(chan struct{})}
	go func() {
		defer close(ts.serveDone)
		ts.serveErr = srv.Serve()
	}()
	tb.Cleanup(func() {
		srv.Close()
		if err := ts.waitServe(); err != nil {
			tb.Error(err)
		}
		if tb.Failed() {
			tb.Logf("stats: %+v\nserver log:\n%s", srv.Stats(), lb.tail(40))
		}
	})
	ts.waitLog("chat server listening") // Serve has started accepting
	return ts
}

// addr returns the address clients dial.
func (ts *testServer) addr() string { return ts.Addr().String() }

// waitServe waits for Serve to return and returns an error if it did not,
// or returned an error.
func (ts *testServer) waitServe() error {
	select {
	case <-ts.serveDone:
		if ts.serveErr != nil {
			return fmt.Errorf("Serve returned %v; want nil", ts.serveErr)
		}
		return nil
	case <-time.After(longWait):
		return fmt.Errorf("Serve has not returned %v after Close or Shutdown", longWait)
	}
}

// waitStats waits until cond holds for the server's stats, and returns
// them; it fails the test after longWait. Call it from the test goroutine.
func (ts *testServer) waitStats(what string, cond func(Stats) bool) Stats {
	ts.tb.Helper()
	deadline := time.Now().Add(longWait)
	for {
		st := ts.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			ts.tb.Fatalf("waited %v for %s; stats: %+v", longWait, what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitActive waits until the server holds exactly n connections: a client
// whose dial returned may not be registered yet, and messages relayed
// before are not for it.
func (ts *testServer) waitActive(n int) {
	ts.tb.Helper()
	ts.waitStats(fmt.Sprintf("Active == %d", n), func(st Stats) bool { return st.Active == int64(n) })
}

// waitLog waits until a line containing every one of subs is logged, and
// returns it; it fails the test after longWait.
func (ts *testServer) waitLog(subs ...string) string {
	ts.tb.Helper()
	deadline := time.Now().Add(longWait)
	for {
		if lines := ts.log.lines(subs...); len(lines) > 0 {
			return lines[0]
		}
		if time.Now().After(deadline) {
			ts.tb.Fatalf("waited %v for a log line containing %q", longWait, subs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Clients -----------------------------------------------------------------

// readMode says what a client does with what arrives.
type readMode int

const (
	keepReads    readMode = iota // read and keep everything
	discardReads                 // read, and only count the bytes
	noReads                      // never read (a slow consumer)
)

// A client is a plain TCP client of a test server. A goroutine reads what
// arrives (unless noReads) and records it.
type client struct {
	tb   testing.TB
	name string
	conn *net.TCPConn
	// stream is what the client reads and writes: conn, or a TLS
	// client's tls.Conn over it.
	stream net.Conn

	mu      sync.Mutex
	data    []byte        // what arrived (keepReads)
	n       int           // bytes arrived
	err     error         // what ended the stream (io.EOF, a reset...), or nil
	changed chan struct{} // closed and replaced when n or err changes
	done    chan struct{} // closed when the reading goroutine returns
}

// dial connects a client to ts; it is closed when the test ends.
func (ts *testServer) dial(name string, mode readMode) *client {
	ts.tb.Helper()
	return dialClient(ts.tb, ts.addr(), name, mode)
}

func dialClient(tb testing.TB, addr, name string, mode readMode) *client {
	tb.Helper()
	return dialClientWith(tb, &net.Dialer{Timeout: longWait}, addr, name, mode)
}

// dialClientWith is dialClient dialing with d (from another local address,
// say).
func dialClientWith(tb testing.TB, d *net.Dialer, addr, name string, mode readMode) *client {
	tb.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("%s: dial %s: %v", name, addr, err)
	}
	return newClient(tb, nc.(*net.TCPConn), nc, name, mode)
}

// newClient starts a client reading and writing stream over conn.
func newClient(tb testing.TB, conn *net.TCPConn, stream net.Conn, name string, mode readMode) *client {
	c := &client{tb: tb, name: name, conn: conn, stream: stream, changed: make(chan struct{}), done: make(chan struct{})}
	if mode == noReads {
		close(c.done)
	} else {
		go c.read(mode == keepReads)
	}
	tb.Cleanup(func() {
		c.conn.Close()
		select {
		case <-c.done:
		case <-time.After(longWait):
			tb.Errorf("%s: reader still running %v after close", c.name, longWait)
		}
	})
	return c
}

// read records what arrives until the stream ends.
func (c *client) read(keep bool) {
	defer close(c.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.stream.Read(buf)
		c.mu.Lock()
		if n > 0 {
			if keep {
				c.data = append(c.data, buf[:n]...)
			}
			c.n += n
		}
		if err != nil {
			c.err = err
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// startReading starts reading for a client dialed with noReads.
func (c *client) startReading(mode readMode) {
	c.done = make(chan struct{})
	go c.read(mode == keepReads)
}

// localAddr is the client's address, the peer address the server logs.
func (c *client) localAddr() string { return c.conn.LocalAddr().String() }

// write writes p whole (or fails); safe from any goroutine.
func (c *client) write(p []byte) error {
	c.stream.SetWriteDeadline(time.Now().Add(longWait))
	_, err := c.stream.Write(p)
	if err != nil {
		return fmt.Errorf("%s: write: %w", c.name, err)
	}
	return nil
}

// send writes p, failing the test on error. Call it from the test goroutine.
func (c *client) send(p []byte) {
	c.tb.Helper()
	if err := c.write(p); err != nil {
		c.tb.Fatal(err)
	}
}

// received returns a copy of what arrived, how many bytes, and what ended
// the stream (nil while it goes on).
func (c *client) received() ([]byte, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.data), c.n, c.err
}

// count returns the bytes arrived so far.
func (c *client) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// waitCond waits until cond (called with c.mu held) holds, stop is closed or
// d passes; it reports whether cond held.
func (c *client) waitCond(stop <-chan struct{}, d time.Duration, cond func() bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok, ch := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		case <-timer.C:
			return false
		}
	}
}

// waitN waits until at least n bytes have arrived. It returns an error if
// the stream ended before, or after longWait.
func (c *client) waitN(n int) error {
	var got int
	var err error
	c.waitCond(nil, longWait, func() bool {
		got, err = c.n, c.err
		return c.n >= n || c.err != nil
	})
	switch {
	case got >= n:
		return nil
	case err != nil:
		return fmt.Errorf("%s: stream ended with %v after %d of %d bytes", c.name, err, got, n)
	}
	return fmt.Errorf("%s: %d of %d bytes arrived after %v", c.name, got, n, longWait)
}

// waitEnd waits until the stream has ended (the server closed the
// connection) and returns what ended it; it fails the test after longWait.
// Call it from the test goroutine.
func (c *client) waitEnd() error {
	c.tb.Helper()
	var err error
	if !c.waitCond(nil, longWait, func() bool { err = c.err; return err != nil }) {
		c.tb.Fatalf("%s: connection still open after %v (%d bytes arrived)", c.name, longWait, c.count())
	}
	return err
}

// isOpen reports whether the stream has not ended.
func (c *client) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

// reset closes the connection with a reset (RST) instead of a FIN.
func (c *client) reset() {
	c.conn.SetLinger(0)
	c.conn.Close()
}

// expect waits until the client has received exactly want (and fails the
// test if what arrived differs). Call it from the test goroutine.
func (c *client) expect(want []byte) {
	c.tb.Helper()
	if err := c.waitN(len(want)); err != nil {
		c.tb.Fatal(err)
	}
	got, _, _ := c.received()
	if !bytes.Equal(got, want) {
		c.tb.Fatalf("%s received %q; want %q", c.name, clip(got), clip(want))
	}
}

// clip shortens b for an error message.
func clip(b []byte) []byte {
	if len(b) > 300 {
		return append(append(b[:150:150], "..."...), b[len(b)-150:]...)
	}
	return b
}

// Messages ----------------------------------------------------------------

// encode returns payload as one message of framing f: a line gets its
// newline, a frame its header; raw is payload itself.
func encode(f Framing, payload string) []byte {
	switch f {
	case Line:
		return []byte(payload + "\n")
	case Frame:
		return appendFrame(nil, []byte(payload))
	}
	return []byte(payload)
}

// appendFrame appends payload with its 4-byte header to b.
func appendFrame(b, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// concat joins messages.
func concat(msgs ...[]byte) []byte { return bytes.Join(msgs, nil) }

// splitMessages cuts a line or frame stream into messages; rest is an
// incomplete message at the end.
func splitMessages(f Framing, data []byte) (msgs [][]byte, rest []byte) {
	for len(data) > 0 {
		var n int
		switch f {
		case Line:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				return msgs, data
			}
			n = i + 1
		case Frame:
			if len(data) < 4 {
				return msgs, data
			}
			size := uint64(binary.BigEndian.Uint32(data))
			if size > uint64(len(data)-4) {
				return msgs, data
			}
			n = 4 + int(size)
		default:
			panic("splitMessages: raw has no boundaries")
		}
		msgs, data = append(msgs, data[:n]), data[n:]
	}
	return msgs, nil
}

// maxRawSenders is how many senders have a raw alphabet of their own.
const maxRawSenders = 20

// rawBase returns the first byte of a raw sender's alphabet: eleven byte
// values (ten digits and a terminator) no other sender uses, so that a
// receiver can tell apart the bytes of each sender in a raw stream, where
// messages have no boundaries.
func rawBase(sender int) byte {
	if sender < 0 || sender >= maxRawSenders {
		panic("rawBase: sender out of range")
	}
	return byte(0x20 + 11*sender)
}

// rawSender returns the sender whose alphabet holds b, or -1.
func rawSender(b byte) int {
	if b < 0x20 || int(b) >= 0x20+11*maxRawSenders {
		return -1
	}
	return int(b-0x20) / 11
}

// A msgGen makes numbered messages: message seq of sender is fully
// determined by (sender, seq), so a receiver can check that each one
// arrived exactly as sent, once, in order. Line and frame messages start
// with "sender:seq:"; raw messages are written in the sender's alphabet.
type msgGen struct {
	f      Framing
	maxPad int // padding bytes at most (0: none)
	minPad int // padding bytes at least
}

func mix(sender, seq int) uint64 {
	x := uint64(sender)<<32 ^ uint64(seq) ^ 0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// msg returns message seq of sender.
func (g msgGen) msg(sender, seq int) []byte {
	h := mix(sender, seq)
	pad := g.minPad
	if g.maxPad > g.minPad {
		pad += int(h % uint64(g.maxPad-g.minPad+1))
	}
	if pad > padSpan {
		panic("msgGen: padding too long")
	}
	padding := padPool(g.f, sender)[h%padSpan:][:pad]
	switch g.f {
	case Raw:
		base := rawBase(sender)
		b := make([]byte, 0, 12+pad)
		for _, d := range strconv.Itoa(seq) {
			b = append(b, base+byte(d-'0'))
		}
		b = append(b, padding...)
		return append(b, base+10)
	case Line:
		b := make([]byte, 0, 24+pad)
		b = fmt.Appendf(b, "%d:%d:", sender, seq)
		b = append(b, padding...)
		if h%3 == 0 {
			b = append(b, '\r') // kept as it is
		}
		return append(b, '\n')
	default:
		b := make([]byte, 4, 28+pad)
		b = fmt.Appendf(b, "%d:%d:", sender, seq)
		b = append(b, padding...)
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		return b
	}
}

// padSpan is the longest padding, and the number of places it starts at
// in a pool of padding bytes.
const padSpan = 1 << 16

var (
	linePadOnce, framePadOnce sync.Once
	linePad, framePad         []byte
	rawPadOnce                [maxRawSenders]sync.Once
	rawPad                    [maxRawSenders][]byte
)

// padPool returns 2*padSpan pseudo-random bytes to take paddings from: for
// lines printable ones (never '\n'), for frames any byte, for raw the
// digits of the sender's alphabet.
func padPool(f Framing, sender int) []byte {
	fill := func(p *[]byte, seed uint64, byteOf func(uint32) byte) {
		r := rand.New(rand.NewPCG(seed, 42))
		b := make([]byte, 2*padSpan)
		for i := range b {
			b[i] = byteOf(r.Uint32())
		}
		*p = b
	}
	switch f {
	case Line:
		linePadOnce.Do(func() { fill(&linePad, 1, func(x uint32) byte { return byte('!' + x%90) }) })
		return linePad
	case Frame:
		framePadOnce.Do(func() { fill(&framePad, 2, func(x uint32) byte { return byte(x) }) })
		return framePad
	}
	base := rawBase(sender)
	rawPadOnce[sender].Do(func() { fill(&rawPad[sender], 3, func(x uint32) byte { return base + byte(x%10) }) })
	return rawPad[sender]
}

// size returns how many bytes messages 0..n-1 of sender make.
func (g msgGen) size(sender, n int) int {
	total := 0
	for seq := range n {
		total += len(g.msg(sender, seq))
	}
	return total
}

// parse returns the sender and number of a line or frame message.
func (g msgGen) parse(m []byte) (sender, seq int, ok bool) {
	p := m
	if g.f == Frame {
		p = m[4:]
	}
	a, rest, ok1 := bytes.Cut(p, []byte(":"))
	b, _, ok2 := bytes.Cut(rest, []byte(":"))
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	s, err1 := strconv.Atoi(string(a))
	n, err2 := strconv.Atoi(string(b))
	return s, n, err1 == nil && err2 == nil && s >= 0 && n >= 0
}

// check checks data, what one client received, against the messages of the
// senders in want: each sender's messages must be there exactly as made,
// once, in order 0, 1, ..., want[sender]-1, and nothing else. With prefix,
// each sender's messages need only be 0..k-1 for some k <= want[sender]
// (want[sender] < 0: no upper bound); a line or frame stream must still end
// on a message boundary. check returns how many messages of each sender
// arrived (for raw, whole or not).
func (g msgGen) check(data []byte, want map[int]int, prefix bool) (map[int]int, error) {
	got := make(map[int]int)
	if g.f == Raw {
		streams := make(map[int][]byte)
		for i := 0; i < len(data); {
			s := rawSender(data[i])
			if _, ok := want[s]; !ok {
				return got, fmt.Errorf("byte %d (%#x) is from no sender of %v", i, data[i], want)
			}
			j := i + 1
			for j < len(data) && rawSender(data[j]) == s {
				j++
			}
			streams[s] = append(streams[s], data[i:j]...)
			i = j
		}
		for s, n := range want {
			st := streams[s]
			off, seq, partial := 0, 0, false
			for off < len(st) {
				if n >= 0 && seq >= n {
					return got, fmt.Errorf("sender %d: %d bytes after its %d messages", s, len(st)-off, n)
				}
				m := g.msg(s, seq)
				k := min(len(m), len(st)-off)
				if !bytes.Equal(st[off:off+k], m[:k]) {
					return got, fmt.Errorf("sender %d: bytes %d.. are %q; want message %d %q", s, off, clip(st[off:off+k]), seq, clip(m))
				}
				off += k
				seq++
				partial = k < len(m)
			}
			got[s] = seq
			if !prefix && (seq != n || partial) {
				return got, fmt.Errorf("sender %d: %d bytes, %d of %d messages (last one whole: %v)", s, len(st), seq, n, !partial)
			}
		}
		return got, nil
	}
	msgs, rest := splitMessages(g.f, data)
	for i, m := range msgs {
		s, seq, ok := g.parse(m)
		n, known := want[s]
		switch {
		case !ok || !known:
			return got, fmt.Errorf("message %d %q is from no sender of %v", i, clip(m), want)
		case seq != got[s]:
			return got, fmt.Errorf("message %d: sender %d's message %d; want its message %d (lost, duplicated or reordered)", i, s, seq, got[s])
		case n >= 0 && seq >= n:
			return got, fmt.Errorf("message %d: sender %d's message %d; it sent only %d", i, s, seq, n)
		case !bytes.Equal(m, g.msg(s, seq)):
			return got, fmt.Errorf("message %d: sender %d's message %d is %q; want %q", i, s, seq, clip(m), clip(g.msg(s, seq)))
		}
		got[s]++
	}
	if len(rest) > 0 {
		return got, fmt.Errorf("the stream ends with %d bytes of an incomplete message: %q", len(rest), clip(rest))
	}
	if !prefix {
		for s, n := range want {
			if got[s] != n {
				return got, fmt.Errorf("sender %d: %d of %d messages", s, got[s], n)
			}
		}
	}
	return got, nil
}

// A floodResult says what a flood sent.
type floodResult struct {
	sent  int   // messages written whole
	bytes int   // their bytes
	err   error // why it stopped early, if it did
}

// flood writes the messages of sender through c, seq 0, 1, ..., at most limit
// of them (0: no limit), several per write, until stop is closed. It keeps
// at most window bytes ahead of each client of pace (counting from what
// they had received when it started; those whose stream ended are not
// waited for), so that clients that read are never slow consumers. Run it
// in its own goroutine.
func flood(c *client, g msgGen, sender, limit int, pace []*client, window int, stop <-chan struct{}) floodResult {
	base := make([]int, len(pace))
	for i, p := range pace {
		base[i] = p.count()
	}
	var r floodResult
	var batch []byte
	for seq := 0; limit == 0 || seq < limit; {
		select {
		case <-stop:
			return r
		default:
		}
		batch = batch[:0]
		k := 0
		for (limit == 0 || seq+k < limit) && len(batch) < window/4 {
			batch = append(batch, g.msg(sender, seq+k)...)
			k++
		}
		// Wait until every paced client is within window bytes of what
		// will have been sent.
		need := r.bytes - max(0, window-len(batch))
		// A client whose stream ended is no longer waited for.
		for i, p := range pace {
			if !p.waitCond(stop, longWait, func() bool { return p.n-base[i] >= need || p.err != nil }) {
				select {
				case <-stop:
					return r
				default:
				}
				r.err = fmt.Errorf("flood: %s has received %d of %d bytes after %v", p.name, p.count()-base[i], r.bytes, longWait)
				return r
			}
		}
		if err := c.write(batch); err != nil {
			r.err = err
			return r
		}
		r.sent += k
		r.bytes += len(batch)
		seq += k
	}
	return r
}
