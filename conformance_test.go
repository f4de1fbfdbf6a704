package cport_test

// The backend conformance suite: the contract every engine of cport meets.
//
// Every test runs once per backend (forEachBackend) and goes through the
// public API only, so that a new backend passes the suite unchanged. The
// environment variable CPORT_BACKENDS (comma-separated names) restricts the
// backends tested; a backend it names that cannot open here fails the tests.
//
// Timing: the suite runs on loaded machines, so deadlines are generous and
// nothing asserts that something was fast. No sleep stands in for
// synchronisation: sleeps poll a condition (eventually), pace a client that
// must be slow, or make an absence check (grace, each commented): "nothing
// more arrives within grace" is the one property that cannot be observed
// otherwise.
//
// Goroutine leaks are checked after every test (checkLeaks).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

const (
	// longWait bounds every wait for something that must happen.
	longWait = 30 * time.Second
	// grace is how long an absence check waits for something that must not
	// happen.
	grace = 200 * time.Millisecond
	// leakSlack is how many goroutines of a test, beyond the test's own, may
	// remain once its ports are closed and its clients are gone. The count
	// is exact (see checkLeaks), and goroutines on their way out are waited
	// for, so none may.
	leakSlack = 0

	mib = 1 << 20
)

// ---------------------------------------------------------------------------
// Backends.

var probed struct {
	once sync.Once
	ok   []string         // the backends that opened here, in Backends order
	errs map[string]error // why the others did not
}

// backends returns the backends to test: those of cport.Backends that open
// on this machine, restricted to CPORT_BACKENDS when it is set. A backend
// that CPORT_BACKENDS names and that cannot open fails the test.
func backends(t testing.TB) []string {
	t.Helper()
	probed.once.Do(func() {
		probed.errs = make(map[string]error)
		for _, name := range cport.Backends() {
			p, err := cport.Open(cport.Config{Backend: name})
			if err != nil {
				probed.errs[name] = err
				continue
			}
			p.Close()
			probed.ok = append(probed.ok, name)
		}
	})
	env := strings.TrimSpace(os.Getenv("CPORT_BACKENDS"))
	if env == "" {
		if len(probed.ok) == 0 {
			t.Fatalf("no backend of %v opens here: %v", cport.Backends(), probed.errs)
		}
		return slices.Clone(probed.ok)
	}
	var list []string
	for _, name := range strings.Split(env, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "" || slices.Contains(list, name):
			continue
		case !slices.Contains(cport.Backends(), name):
			t.Fatalf("CPORT_BACKENDS names %q, which this build lacks (it has %v)", name, cport.Backends())
		case probed.errs[name] != nil:
			t.Fatalf("CPORT_BACKENDS names %q, which cannot open here: %v", name, probed.errs[name])
		}
		list = append(list, name)
	}
	if len(list) == 0 {
		t.Fatalf("CPORT_BACKENDS=%q names no backend", env)
	}
	return list
}

// forEachBackend runs f as a parallel subtest "backend=NAME" per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b string)) {
	t.Helper()
	runBackends(t, true, f)
}

// forEachBackendSerial is forEachBackend for the heavy tests (thousands of
// sockets), which run one backend at a time.
func forEachBackendSerial(t *testing.T, f func(t *testing.T, b string)) {
	t.Helper()
	runBackends(t, false, f)
}

func runBackends(t *testing.T, parallel bool, f func(t *testing.T, b string)) {
	t.Helper()
	for _, b := range backends(t) {
		t.Run("backend="+b, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			labelTest(t)
			f(t, b)
		})
	}
}

// ---------------------------------------------------------------------------
// Goroutine leaks.
//
// Subtests of several backends run in parallel, so runtime.NumGoroutine
// mixes their goroutines. Instead every test's goroutine gets a pprof label
// of its own, which every goroutine it starts inherits, and so do the
// goroutines those start (a backend's reading and writing goroutines are
// started from the test's calls and workers): after the test, the goroutines
// carrying its label are its leaks.

const leakLabel = "cport-conformance-test"

var (
	labelSeq atomic.Int64
	labeled  sync.Map // testing.TB -> its label value
	checked  sync.Map // testing.TB -> struct{}: checkLeaks registered
)

// labelTest labels the calling goroutine, which must be t's, unless done.
func labelTest(t testing.TB) string {
	if v, ok := labeled.Load(t); ok {
		return v.(string)
	}
	id := strconv.FormatInt(labelSeq.Add(1), 10)
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(leakLabel, id)))
	labeled.Store(t, id)
	t.Cleanup(func() { labeled.Delete(t) })
	return id
}

// labeledGoroutines returns how many goroutines carry the label id, and
// their stacks.
func labeledGoroutines(id string) (int, string) {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		panic(err)
	}
	want := fmt.Sprintf("%q:%q", leakLabel, id)
	var (
		total int
		out   strings.Builder
	)
	// A header line, then blank-line separated records: "N @ pc pc...",
	// "# labels: {...}", then the frames.
	_, records, _ := strings.Cut(buf.String(), "\n")
	for rec := range strings.SplitSeq(records, "\n\n") {
		lines := strings.SplitN(rec, "\n", 3)
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "# labels: ") || !strings.Contains(lines[1], want) {
			continue
		}
		count, _, ok := strings.Cut(lines[0], " @")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(count)
		if err != nil {
			continue
		}
		total += n
		if !strings.Contains(rec, "labeledGoroutines") { // not the checker itself
			out.WriteString(rec)
			out.WriteString("\n\n")
		}
	}
	return total, out.String()
}

// checkLeaks registers, once per test, a cleanup that fails t if goroutines
// it started are still alive once every later cleanup has run (the ports
// closed, the clients closed).
func checkLeaks(t testing.TB) {
	t.Helper()
	id := labelTest(t)
	if _, done := checked.LoadOrStore(t, struct{}{}); done {
		return
	}
	t.Cleanup(func() {
		defer checked.Delete(t)
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, stacks := labeledGoroutines(id)
			if n <= 1+leakSlack { // 1: the test's own goroutine, running this
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked by the test (slack %d):\n%s", n-1, leakSlack, stacks)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// ---------------------------------------------------------------------------
// Ports, listeners, clients.

// openPort opens a port on backend b (cfg's other fields as given), closed
// when the test ends, after which no goroutine of the test may be left.
func openPort(t testing.TB, b string, cfg ...cport.Config) *cport.Port {
	t.Helper()
	checkLeaks(t)
	var c cport.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.Backend = b
	p, err := cport.Open(c)
	if err != nil {
		t.Fatalf("Open(%+v): %v", c, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Port.Close: %v", err)
		}
	})
	if got := p.Backend(); got != b {
		t.Fatalf("Port.Backend() = %q; want %q", got, b)
	}
	return p
}

// listen opens a listener on 127.0.0.1:0, closed when the test ends.
func listen(t testing.TB, p *cport.Port, key uint64) *cport.Listener {
	t.Helper()
	l, err := p.Listen("tcp", "127.0.0.1:0", key)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	if l.Key() != key {
		t.Fatalf("Listener.Key() = %d; want %d", l.Key(), key)
	}
	return l
}

// dial connects n raw clients to addr, closed when the test ends. Up to 8
// dial at once.
func dial(t testing.TB, addr net.Addr, n int) []*net.TCPConn {
	t.Helper()
	conns := make([]*net.TCPConn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range min(n, 8) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := net.DialTimeout("tcp", addr.String(), longWait)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				conns[i] = c.(*net.TCPConn)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("dialing %d clients: %v", n, errors.Join(errs...))
	}
	return conns
}

func dialOne(t testing.TB, addr net.Addr) *net.TCPConn {
	t.Helper()
	return dial(t, addr, 1)[0]
}

// readN reads exactly n bytes from c, within longWait.
func readN(c net.Conn, n int) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(longWait))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	k, err := io.ReadFull(c, b)
	return b[:k], err
}

func mustReadN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	b, err := readN(c, n)
	if err != nil {
		t.Fatalf("client reading %d bytes: %v", n, err)
	}
	return b
}

func mustWrite(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(longWait))
	defer c.SetWriteDeadline(time.Time{})
	if _, err := c.Write(b); err != nil {
		t.Fatalf("client writing %d bytes: %v", len(b), err)
	}
}

// reset closes c with an RST instead of a FIN.
func reset(t testing.TB, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatalf("SetLinger(0): %v", err)
	}
	c.Close()
}

// ---------------------------------------------------------------------------
// Workers.

// runWorkers starts n goroutines, each with a Worker waiting with batches
// of batch completions and calling handle for each, until the port closes.
// When the test ends it closes the port and waits for them.
func runWorkers(t testing.TB, p *cport.Port, n, batch int, handle func(c *cport.Completion)) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		w := p.Worker()
		wg.Go(func() {
			defer w.Close()
			buf := make([]cport.Completion, batch)
			for {
				k, err := w.Wait(buf, -1)
				if err != nil {
					if !errors.Is(err, cport.ErrClosed) {
						t.Errorf("Worker.Wait: %v; want only ErrClosed, once the port is closed", err)
					}
					return
				}
				if k < 1 || k > len(buf) {
					t.Errorf("Worker.Wait returned %d completions for a batch of %d", k, len(buf))
					return
				}
				for i := range buf[:k] {
					handle(&buf[i])
					buf[i] = cport.Completion{}
				}
			}
		})
	}
	t.Cleanup(func() {
		p.Close()
		waitGroup(t, &wg, "the workers to return ErrClosed")
	})
}

// limitErrors returns a t.Errorf for worker callbacks that reports the
// first few failures only: after one failure, a backend may well fail
// every completion that follows.
func limitErrors(t testing.TB) func(format string, args ...any) {
	var n atomic.Int64
	return func(format string, args ...any) {
		t.Helper()
		switch k := n.Add(1); {
		case k <= 5:
			t.Errorf(format, args...)
		case k == 6:
			t.Errorf("(more errors not shown)")
		}
	}
}

// waitGroup waits for wg, failing t after longWait.
func waitGroup(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(longWait):
		t.Errorf("waited %v for %s", longWait, what)
	}
}

// A sink collects completions for the test goroutine to take, in any order
// it likes. It is unbounded, so workers never block on it.
type sink struct {
	mu    sync.Mutex
	items []cport.Completion
	ready chan struct{} // capacity 1: something was added
}

// collect starts n workers putting every completion of p into a sink.
func collect(t testing.TB, p *cport.Port, n int) *sink {
	t.Helper()
	s := &sink{ready: make(chan struct{}, 1)}
	runWorkers(t, p, n, 4, s.put)
	return s
}

func (s *sink) put(c *cport.Completion) {
	s.mu.Lock()
	s.items = append(s.items, *c)
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// tryTake removes and returns the first completion matching pred.
func (s *sink) tryTake(pred func(*cport.Completion) bool) (cport.Completion, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.items {
		if pred(&s.items[i]) {
			c := s.items[i]
			s.items = slices.Delete(s.items, i, i+1)
			return c, true
		}
	}
	return cport.Completion{}, false
}

// takeAll removes and returns every completion matching pred now in s.
func (s *sink) takeAll(pred func(*cport.Completion) bool) []cport.Completion {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []cport.Completion
	kept := s.items[:0]
	for i := range s.items {
		if pred(&s.items[i]) {
			out = append(out, s.items[i])
		} else {
			kept = append(kept, s.items[i])
		}
	}
	clear(s.items[len(kept):])
	s.items = kept
	return out
}

// take waits for a completion matching pred and removes it.
func (s *sink) take(t testing.TB, what string, pred func(*cport.Completion) bool) cport.Completion {
	t.Helper()
	timer := time.NewTimer(longWait)
	defer timer.Stop()
	for {
		if c, ok := s.tryTake(pred); ok {
			return c
		}
		select {
		case <-s.ready:
		case <-timer.C:
			t.Fatalf("no %s completion within %v; queued: %s", what, longWait, s.String())
		}
	}
}

// none is an absence check: it fails t if a completion matching pred is
// in the sink or arrives within grace. (A sleep is the only way to observe
// that nothing happens.)
func (s *sink) none(t testing.TB, what string, pred func(*cport.Completion) bool) {
	t.Helper()
	time.Sleep(grace)
	if c, ok := s.tryTake(pred); ok {
		t.Fatalf("unexpected %s completion: %s", what, describe(&c))
	}
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := make([]string, len(s.items))
	for i := range s.items {
		parts[i] = describe(&s.items[i])
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func describe(c *cport.Completion) string {
	return fmt.Sprintf("{%v key=%d tag=%d n=%d err=%v}", c.Op, c.Key, c.Tag, c.N, c.Err)
}

// Predicates for sink.take.

func isOp(op cport.Op) func(*cport.Completion) bool {
	return func(c *cport.Completion) bool { return c.Op == op }
}

func isOpOf(op cport.Op, conn *cport.Conn) func(*cport.Completion) bool {
	return func(c *cport.Completion) bool { return c.Op == op && c.Conn == conn }
}

// ---------------------------------------------------------------------------
// Accepted connections.

// acceptOne accepts a single client on a new listener: the server side
// (closed when the test ends) and the client.
func acceptOne(t testing.TB, p *cport.Port, s *sink) (*cport.Conn, *net.TCPConn) {
	t.Helper()
	l := listen(t, p, 1)
	if err := l.Accept(1); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	cl := dialOne(t, l.Addr())
	a := s.take(t, "accept", isOp(cport.OpAccept))
	if a.Err != nil || a.Conn == nil {
		t.Fatalf("accept completion %s; want a connection", describe(&a))
	}
	t.Cleanup(func() { a.Conn.Close() })
	l.Close()
	return a.Conn, cl
}

// acceptN accepts n clients on a new listener with AcceptMulti: the server
// sides (closed when the test ends) and, at the same index, their clients.
func acceptN(t testing.TB, p *cport.Port, s *sink, n int) ([]*cport.Conn, []*net.TCPConn) {
	t.Helper()
	l := listen(t, p, 1)
	if err := l.AcceptMulti(1); err != nil {
		t.Fatalf("AcceptMulti: %v", err)
	}
	clients := dial(t, l.Addr(), n)
	index := make(map[string]int, n)
	for i, cl := range clients {
		index[cl.LocalAddr().String()] = i
	}
	conns := make([]*cport.Conn, n)
	for range n {
		a := s.take(t, "accept", isOp(cport.OpAccept))
		if a.Err != nil || a.Conn == nil {
			t.Fatalf("accept completion %s; want a connection", describe(&a))
		}
		t.Cleanup(func() { a.Conn.Close() })
		i, ok := index[a.Conn.RemoteAddr().String()]
		if !ok || conns[i] != nil {
			t.Fatalf("accepted a conn from %s: not a client, or twice", a.Conn.RemoteAddr())
		}
		conns[i] = a.Conn
	}
	l.Close()
	return conns, clients
}

// eventually polls cond until it holds, failing t after longWait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", longWait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recvAll receives on conn with RecvMulti into a buffer until the receive
// ends, releasing each completion; it returns the bytes and the final error.
// It consumes conn's receive completions from s.
func recvAll(t testing.TB, s *sink, conn *cport.Conn, tag uint64) ([]byte, error) {
	t.Helper()
	if err := conn.RecvMulti(tag); err != nil {
		t.Fatalf("RecvMulti: %v", err)
	}
	var got []byte
	for {
		c := s.take(t, "receive", isOpOf(cport.OpRecv, conn))
		if c.Tag != tag {
			t.Errorf("receive completion tag %d; want %d", c.Tag, tag)
		}
		got = append(got, c.Buf...)
		c.Release()
		if c.Err != nil {
			return got, c.Err
		}
	}
}

// ---------------------------------------------------------------------------
// Tests of the harness's own subject: which backends there are.

// TestConformanceBackend: Backend returns the name asked for; "auto" and ""
// pick the first of Backends that opens; an unknown name is unavailable.
func TestConformanceBackend(t *testing.T) {
	names := cport.Backends()
	if len(names) == 0 || !slices.Contains(names, "portable") {
		t.Fatalf("Backends() = %v; want a list that has portable", names)
	}
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		if got := p.Backend(); got != b {
			t.Errorf("Backend() = %q; want %q", got, b)
		}
	})
	t.Run("auto", func(t *testing.T) {
		var first string
		for _, name := range names {
			if p, err := cport.Open(cport.Config{Backend: name}); err == nil {
				p.Close()
				first = name
				break
			}
		}
		for _, name := range []string{"", "auto"} {
			p, err := cport.Open(cport.Config{Backend: name})
			if err != nil {
				t.Fatalf("Open(Config{Backend: %q}): %v", name, err)
			}
			if got := p.Backend(); got != first {
				t.Errorf("Open(Config{Backend: %q}).Backend() = %q; want %q, the first of %v that opens", name, got, first, names)
			}
			p.Close()
		}
	})
	t.Run("unknown", func(t *testing.T) {
		p, err := cport.Open(cport.Config{Backend: "no-such-backend"})
		if err == nil {
			p.Close()
			t.Fatal("Open of an unknown backend succeeded")
		}
		if !errors.Is(err, cport.ErrUnavailable) {
			t.Errorf("Open of an unknown backend: %v; want ErrUnavailable", err)
		}
	})
}

// TestConformanceHarnessBackends: CPORT_BACKENDS restricts the list, and
// the list only holds backends that open.
func TestConformanceHarnessBackends(t *testing.T) {
	list := backends(t)
	for _, b := range list {
		p, err := cport.Open(cport.Config{Backend: b})
		if err != nil {
			t.Errorf("backends() lists %q, which does not open: %v", b, err)
			continue
		}
		p.Close()
	}
	if env := os.Getenv("CPORT_BACKENDS"); env != "" {
		t.Logf("CPORT_BACKENDS=%q: testing %v", env, list)
	} else {
		t.Logf("testing %v of %v", list, cport.Backends())
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
