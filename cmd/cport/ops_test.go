package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"cport.dev/cport"
	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// scrape gets url's /metrics and parses it with Prometheus's text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mfs
}

// get returns the status and body of a GET of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: longWait}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// value returns the value of the sample of family name whose labels
// include want (label, value pairs), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == want[i] && l.GetValue() == want[i+1] }) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// documented returns the metric names docs/OPERATIONS.md lists.
func documented(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(cport_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		names = append(names, m[1])
	}
	if len(names) < 20 {
		t.Fatalf("docs/OPERATIONS.md lists %d metrics: %q", len(names), names)
	}
	return names
}

// checkDocumented checks that mfs has every metric docs/OPERATIONS.md
// lists (those of the cluster relay only if cluster) and that the doc
// lists every cport_ metric of mfs.
func checkDocumented(t *testing.T, mfs map[string]*dto.MetricFamily, cluster bool) {
	t.Helper()
	names := documented(t)
	for _, n := range names {
		if strings.HasPrefix(n, "cport_relay_") && !cluster {
			if mfs[n] != nil {
				t.Errorf("%s is served without a cluster relay", n)
			}
			continue
		}
		if n == "cport_engine_loop_connections" && infoLabel(mfs, "backend") != "uring" {
			continue // only an engine that deals connections to loops has it
		}
		if mfs[n] == nil {
			t.Errorf("/metrics has no %s, which docs/OPERATIONS.md lists", n)
		}
	}
	for n := range mfs {
		if strings.HasPrefix(n, "cport_") && !slices.Contains(names, n) {
			t.Errorf("/metrics has %s, which docs/OPERATIONS.md does not list", n)
		}
	}
}

// infoLabel returns the value of cport_info's label name.
func infoLabel(mfs map[string]*dto.MetricFamily, name string) string {
	mf := mfs["cport_info"]
	if mf == nil || len(mf.GetMetric()) == 0 {
		return ""
	}
	for _, l := range mf.GetMetric()[0].GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// lineClient is a client of a line-framing server that reads everything.
type lineClient struct {
	conn net.Conn
	got  chan int // the bytes of each read
	n    int      // bytes read so far, counted by waitBytes
}

func dialLine(t *testing.T, addr string) *lineClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, longWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lc := &lineClient{conn: c, got: make(chan int, 1024)}
	go func() {
		defer close(lc.got)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				lc.got <- n
			}
			if err != nil {
				return
			}
		}
	}()
	return lc
}

// waitBytes waits until c has read n bytes in all.
func (c *lineClient) waitBytes(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(longWait)
	for c.n < n {
		select {
		case k, ok := <-c.got:
			if !ok {
				t.Fatalf("connection ended after %d of %d bytes", c.n, n)
			}
			c.n += k
		case <-timeout:
			t.Fatalf("%d of %d bytes arrived after %v", c.n, n, longWait)
		}
	}
}

// TestMetrics runs a chat server with the operations handler, drives
// traffic with three clients, and checks every documented metric and the
// values the traffic gives: messages in × clients = messages out, once
// every message has arrived.
func TestMetrics(t *testing.T) {
	cfg := chat.Config{Addr: "127.0.0.1:0", Backend: backends(t)[0], Framing: chat.Line, HalfCloseTimeout: -1}
	srv, err := chat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ops := httptest.NewServer(opsHandler(srv, false, slog.New(slog.DiscardHandler)))
	defer ops.Close()
	if code, body := get(t, ops.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not serving yet") {
		t.Errorf("/readyz before Serve: %d %q; want 503, not serving yet", code, body)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer srv.Close()

	const clients, each = 3, 10
	var cs []*lineClient
	for range clients {
		cs = append(cs, dialLine(t, srv.Addr().String()))
	}
	waitActive(t, srv, clients)
	total := 0
	for i, c := range cs {
		var msgs []byte
		for j := range each {
			msgs = fmt.Appendf(msgs, "message %d of client %d\n", j, i)
		}
		if _, err := c.conn.Write(msgs); err != nil {
			t.Fatal(err)
		}
		total += len(msgs)
		for _, r := range cs {
			r.waitBytes(t, total) // all arrived: nothing in flight
		}
	}

	mfs := scrape(t, ops.URL)
	checkDocumented(t, mfs, false)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cport_ready", nil, 1},
		{"cport_connections", nil, clients},
		{"cport_connections_accepted_total", nil, clients},
		{"cport_messages_received_total", nil, clients * each},
		{"cport_messages_sent_total", nil, clients * clients * each},
		{"cport_received_bytes_total", nil, float64(total)},
		{"cport_sent_bytes_total", nil, float64(clients * total)},
		{"cport_send_queue_bytes", nil, clients}, // the histogram's count: one per client
		{"cport_connections_closed_total", []string{"reason", "peer"}, 0},
		{"cport_connections_refused_total", []string{"reason", "max_conns"}, 0},
		{"cport_info", []string{"backend", srv.Backend(), "framing", "line"}, 1},
		{"cport_build_info", []string{"goversion", runtime.Version()}, 1},
	} {
		if got, ok := value(mfs, tt.name, tt.labels...); !ok || got != tt.want {
			t.Errorf("%s%q = %v (found: %v); want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	relayed, _ := value(mfs, "cport_relayed_runs_total")
	if got, _ := value(mfs, "cport_deliveries_total"); relayed < clients || got != clients*relayed {
		t.Errorf("cport_deliveries_total = %v, cport_relayed_runs_total %v; want %d times the runs relayed", got, relayed, clients)
	}
	if got, _ := value(mfs, "cport_engine_writes_total"); got < 1 {
		t.Errorf("cport_engine_writes_total = %v; want some", got)
	}
	for _, std := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes"} {
		if mfs[std] == nil {
			t.Errorf("/metrics has no %s: the Go collector is missing", std)
		}
	}

	// A client leaves: it is counted, and the server no longer holds it.
	cs[0].conn.Close()
	deadline := time.Now().Add(longWait)
	for {
		mfs = scrape(t, ops.URL)
		if v, _ := value(mfs, "cport_connections_closed_total", "reason", "peer"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cport_connections_closed_total{reason=peer} is not 1 after %v", longWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v, _ := value(mfs, "cport_connections"); v != clients-1 {
		t.Errorf("cport_connections = %v after a client left; want %d", v, clients-1)
	}

	if code, body := get(t, ops.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %q; want 200", code, body)
	}
	if code, body := get(t, ops.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz while serving: %d %q; want 200", code, body)
	}
	if code, _ := get(t, ops.URL+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: status %d; want 404", code)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, ops.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz after Shutdown: %d %q; want 503, shutting down", code, body)
	}
	if code, _ := get(t, ops.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after Shutdown: status %d; want 200 (the process is alive)", code)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

var metricsRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+) pprof=(\S+)`)

// startServerOps runs cport serve with --metrics-addr on a free port, and
// returns it, its chat address and the base URL of its metrics listener.
func startServerOps(t *testing.T, flags ...string) (*proc, string, string) {
	t.Helper()
	p, addr := startServer(t, append([]string{"--metrics-addr", "127.0.0.1:0"}, flags...)...)
	m := metricsRE.FindStringSubmatch(p.stderr.String()) // logged before the chat server's address
	if m == nil {
		t.Fatalf("the server has not logged its metrics address; stderr:\n%s", p.stderr.String())
	}
	return p, addr, "http://" + m[1]
}

// TestServeMetrics: cport serve --metrics-addr serves the documented
// metrics, whose values match what cport load sent and got; /healthz and
// /readyz answer; --pprof serves the profiles; --stats-interval logs the
// stats line; SIGTERM stops it all.
func TestServeMetrics(t *testing.T) {
	needSignals(t)
	srv, addr, base := startServerOps(t, "--framing", "frame", "--pprof", "--stats-interval", "100ms")
	const clients = 10
	code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--framing", "frame",
		"--clients", fmt.Sprint(clients), "--senders", "3", "--duration", "500ms", "--warmup", "0", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("cport load: exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if rep.Sent == 0 || rep.Delivered != rep.Sent*clients {
		t.Fatalf("cport load sent %d, delivered %d; want some, each to %d clients", rep.Sent, rep.Delivered, clients)
	}
	// The load's clients are gone once the server counts them closed.
	var mfs map[string]*dto.MetricFamily
	deadline := time.Now().Add(longWait)
	for {
		mfs = scrape(t, base)
		if v, _ := value(mfs, "cport_connections"); v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cport_connections is not 0 %v after the load ended", longWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkDocumented(t, mfs, false)
	in, _ := value(mfs, "cport_messages_received_total")
	sent, _ := value(mfs, "cport_messages_sent_total")
	// Before its clients are all registered, cport load sends probes,
	// which reach fewer than all of them.
	if in < float64(rep.Sent) || sent < float64(rep.Delivered) || sent > in*clients {
		t.Errorf("cport_messages_received_total %v, cport_messages_sent_total %v; want at least the %d messages cport load sent and the %d it got, and at most %d times those received",
			in, sent, rep.Sent, rep.Delivered, clients)
	}
	if v, _ := value(mfs, "cport_connections_accepted_total"); v != clients {
		t.Errorf("cport_connections_accepted_total = %v; want %d", v, clients)
	}
	if v, _ := value(mfs, "cport_info", "framing", "frame"); v != 1 {
		t.Errorf("cport_info{framing=frame} = %v; want 1", v)
	}
	if mfs["process_cpu_seconds_total"] == nil && runtime.GOOS == "linux" {
		t.Error("/metrics has no process_cpu_seconds_total: the process collector is missing")
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/debug/pprof/": 200, "/debug/pprof/cmdline": 200, "/nosuch": 404} {
		if code, body := get(t, base+path); code != want {
			t.Errorf("GET %s: status %d (%q); want %d", path, code, body, want)
		}
	}
	if !srv.stderr.waitFor(`msg=stats ready=yes`, longWait) {
		t.Errorf("no stats line logged with --stats-interval 100ms; stderr:\n%s", srv.stderr.String())
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(longWait); code != 0 {
		t.Errorf("the server exited with %d after SIGTERM; want 0", code)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("the metrics listener still accepts after the server exited")
	}
}

// TestServeNoPprof: without --pprof, /debug/pprof/ is not served.
func TestServeNoPprof(t *testing.T) {
	_, _, base := startServerOps(t)
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: status %d; want 404", code)
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics: status %d; want 200", code)
	}
}

// TestServeMetricsAddrBusy: a --metrics-addr in use fails the server,
// naming the flag.
func TestServeMetricsAddrBusy(t *testing.T) {
	code, _, errOut := runCmd("serve", "--addr", "127.0.0.1:0", "--backend", backends(t)[0], "--metrics-addr", busyAddr(t))
	if code != 1 || !strings.HasPrefix(errOut, "cport serve: --metrics-addr: listen tcp") {
		t.Errorf("cport serve --metrics-addr <busy>: status %d, stderr %q; want 1 and an error naming --metrics-addr", code, errOut)
	}
}

// autoBackend returns the backend "auto" opens here.
func autoBackend(t *testing.T) string {
	t.Helper()
	p, err := cport.Open(cport.Config{})
	if err != nil {
		t.Skip("no cport backend can run here")
	}
	defer p.Close()
	return p.Backend()
}

// TestVersion: cport version and cport --version give the Go version and
// the engines of this build, and which one auto picks here.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := runCmd(args...)
		if code != 0 || errOut != "" {
			t.Errorf("cport %s: status %d, stderr %q; want 0 and nothing", args[0], code, errOut)
		}
		want := []string{"cport ", "go: " + runtime.Version(), "engines: " + strings.Join(cport.Backends(), ", "), "auto: " + autoBackend(t)}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("cport %s says:\n%s\nwant %q in it", args[0], out, w)
			}
		}
	}
	if _, out, _ := runCmd("help"); !strings.Contains(out, "version") {
		t.Errorf("cport help does not list version:\n%s", out)
	}
}

// TestServeParseOps: the operations flags are parsed into the command's
// configuration; by default there is no metrics listener, no pprof and a
// stats line a minute.
func TestServeParseOps(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want serveConfig
	}{
		{nil, serveConfig{StatsInterval: time.Minute}},
		{[]string{"--metrics-addr", "127.0.0.1:9125", "--pprof", "--stats-interval", "0"}, serveConfig{MetricsAddr: "127.0.0.1:9125", Pprof: true}},
		{[]string{"--metrics-addr", ":9125", "--stats-interval", "10s"}, serveConfig{MetricsAddr: ":9125", StatsInterval: 10 * time.Second}},
	} {
		fs := flag.NewFlagSet("cport serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		sc, err := parseServe(fs, tt.args)
		if err != nil || sc.MetricsAddr != tt.want.MetricsAddr || sc.Pprof != tt.want.Pprof || sc.StatsInterval != tt.want.StatsInterval {
			t.Errorf("cport serve %s: %+v, %v; want %+v", strings.Join(tt.args, " "), sc, err, tt.want)
		}
	}
}
