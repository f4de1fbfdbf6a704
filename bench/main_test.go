package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	m := medians([]metrics{{"a": 1, "b": 10}, {"a": 3, "b": 30}, {"a": 2, "b": 20}})
	if m["a"] != 2 || m["b"] != 20 {
		t.Errorf("medians = %v", m)
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		n, per int
		want   []int
	}{
		{10000, 19000, []int{10000}},
		{50000, 19000, []int{16667, 16667, 16666}},
		{2000, 1000, []int{1000, 1000}},
		{2001, 1000, []int{667, 667, 667}},
	} {
		got := split(c.n, c.per)
		if !slices.Equal(got, c.want) {
			t.Errorf("split(%d, %d) = %v, want %v", c.n, c.per, got, c.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--quick"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Repeat != 1 || c.Duration >= 5*time.Second || c.PerProcess != 1000 || len(c.Scenarios) != len(allScenarios) {
		t.Errorf("--quick: %+v", c)
	}
	c, err = parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Repeat != 3 || c.Out != "" || c.PerProcess != 19000 {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := parseFlags([]string{"--scenarios", "fanout,nope"}); err == nil {
		t.Error("an unknown scenario was accepted")
	}
	if c, err := parseFlags([]string{"--docs"}); err != nil || !c.Docs {
		t.Errorf("--docs: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"--docs", "--out", "x"}, {"--replot", "x", "--out", "y"}, {"--replot", "x", "--docs"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
}

// TestDefaultOut: a run writes, unless told, to a new directory outside
// the repository.
func TestDefaultOut(t *testing.T) {
	start := time.Date(2026, 12, 7, 13, 4, 5, 0, time.UTC)
	got := defaultOut(start)
	if want := filepath.Join(os.TempDir(), "cport-bench-20261207-130405"); got != want {
		t.Errorf("defaultOut = %s, want %s", got, want)
	}
	if defaultOut(start.Add(time.Second)) == got {
		t.Error("two runs a second apart write to the same directory")
	}
}

func TestSkipClients(t *testing.T) {
	r := &runner{limit: 20000}
	if why := r.skipClients(10000); why != "" {
		t.Errorf("10000 connections skipped: %s", why)
	}
	why := r.skipClients(50000)
	if !strings.Contains(why, "server process limited to 20000 descriptors by RLIMIT_NOFILE") {
		t.Errorf("50000 connections: %q", why)
	}
}

// TestWrite writes RESULTS.md and the plots from made-up results.
func TestWrite(t *testing.T) {
	r := &runner{
		cfg:     Config{Scenarios: allScenarios, Repeat: 3, Duration: 5 * time.Second, Warmup: time.Second},
		limit:   20000,
		servers: []serverSpec{{name: "cport/uring"}, {name: "net"}, {name: "gnet"}},
		machine: machine{cpu: "Test CPU", cores: 2, memory: "24.0 GiB", kernel: "6.18.0", goVer: "go1.26", date: time.Now()},
	}
	r.note("latency: open-loop rate 1000 messages/s")
	for i, s := range r.servers {
		f := float64(i + 1)
		for _, n := range []int{100, 1000, 10000} {
			r.results = append(r.results, &result{scenario: "fanout", server: s.name, point: n, runs: 3,
				median: metrics{mDeliveries: 1e6 * f / float64(n/100), mAccepted: 1e4 * f, mP50: 1e6, mP99: 5e6, mCPUDelivery: 200 * f, mRSS: 1 << 25}})
		}
		r.results = append(r.results,
			&result{scenario: "latency", server: s.name, point: 1000, runs: 3, median: metrics{mP50: 1e6 * f, mP99: 2e6 * f, mP999: 3e6 * f, mDeliveries: 5e5}},
			&result{scenario: "idle", server: s.name, point: 10000, runs: 3, median: metrics{mRSSPerConn: 1000 * f, mIdleCPU: 0.1, mRSS: 1 << 26}},
			&result{scenario: "idle", server: s.name, point: 50000, skipped: "server process limited to 20000 descriptors by RLIMIT_NOFILE"},
			&result{scenario: "scale", server: s.name, point: 100000, skipped: "server process limited to 20000 descriptors by RLIMIT_NOFILE"},
			&result{scenario: "echo", server: s.name, point: 1000, runs: 3, median: metrics{mEchoes: 1e5 * f, mEchoMiB: 100 * f, mCPUPercent: 50, mCPUDelivery: 5000}},
		)
	}
	r.results[0].problem = "lost 3"
	dir := t.TempDir()
	if d := os.Getenv("BENCH_TEST_KEEP"); d != "" { // to look at the plots: BENCH_TEST_KEEP=/tmp/x go test -run TestWrite
		dir = d
	}
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| CPU | Test CPU, 2 cores |", "## Fan-out", "## Latency", "## Idle connections", "## Scale", "## Echo",
		"vs net", "1.50×", "50000 connections: **skipped**: server process limited to 20000 descriptors",
		"![Fan-out](fanout.png)", "⚠", "## Problems", "## Notes",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md lacks %q", want)
		}
	}
	for _, png := range []string{"fanout.png", "latency.png", "idle.png", "echo.png"} {
		b, err := os.ReadFile(filepath.Join(dir, png))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", png)
		}
	}
	if t.Failed() {
		t.Logf("RESULTS.md:\n%s", md)
	}
}
