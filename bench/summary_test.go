package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleRunner is a runner with made-up results of three servers.
func sampleRunner() *runner {
	r := &runner{
		cfg:     Config{Scenarios: []string{"fanout", "idle", "echo-paced"}, Repeat: 1, Duration: time.Second, Warmup: time.Second},
		limit:   20000,
		servers: []serverSpec{{name: "cport/uring"}, {name: "net"}, {name: "gnet"}},
		machine: machine{date: time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)},
	}
	r.results = []*result{
		{scenario: "fanout", server: "cport/uring", point: 1000, runs: 1, median: metrics{mDeliveries: 4.2e6}},
		{scenario: "fanout", server: "net", point: 1000, runs: 1, median: metrics{mDeliveries: 2.9e6}, problem: "lost 3"},
		{scenario: "fanout", server: "gnet", point: 1000, runs: 0, problem: "the server died"},
		{scenario: "idle", server: "cport/uring", point: 2000, runs: 1, median: metrics{mRSSPerConn: 837}},
		{scenario: "idle", server: "net", point: 2000, runs: 1, median: metrics{mRSSPerConn: 5 * 1024}},
		{scenario: "idle", server: "gnet", point: 2000, runs: 1, median: metrics{mRSSPerConn: 1536}},
		{scenario: "idle", server: "cport/uring", point: 50000, skipped: "too many"},
		{scenario: "idle", server: "net", point: 50000, skipped: "too many"},
		{scenario: "idle", server: "gnet", point: 50000, skipped: "too many"},
	}
	return r
}

func TestSummaryTable(t *testing.T) {
	var b strings.Builder
	sampleRunner().summaryTable(&b)
	t.Logf("\n%s", b.String())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 lines (fanout 1,000; idle 2,000 and 50,000; echo-paced did not run), got:\n%s", b.String())
	}
	for i, want := range [][]string{
		{"scenario", "point", "figure", "cport/uring", "net", "gnet"},
		{"fanout", "1,000 clients", "deliveries/s", "4.2M", "2.9M ⚠", "failed"},
		{"idle", "2,000 connections", "RSS per connection", "837 B", "5.0 KiB", "1.5 KiB"},
		{"idle", "50,000 connections", "skipped", "skipped", "skipped"},
	} {
		at := 0
		for _, w := range want {
			j := strings.Index(lines[i][at:], w)
			if j < 0 {
				t.Errorf("line %d %q: no %q after column %d", i, lines[i], w, at)
				break
			}
			at += j + len(w)
		}
	}
	// The columns line up: every server's column starts at the same place.
	col := strings.Index(lines[0], "cport/uring")
	for _, l := range lines[1:] {
		if strings.Index(l, "4.2M") > 0 && strings.Index(l, "4.2M") != col {
			t.Errorf("column of cport/uring at %d in %q, header at %d", strings.Index(l, "4.2M"), l, col)
		}
	}
}

func TestSaveReplot(t *testing.T) {
	dir := t.TempDir()
	if _, err := replot(dir); err == nil || !strings.Contains(err.Error(), "no results.json") {
		t.Errorf("replot of an empty directory: %v", err)
	}
	r := sampleRunner()
	r.note("a note")
	if err := r.save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := loadSaved(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.results) != len(r.results) || len(back.servers) != 3 || back.notes[0] != "a note" {
		t.Fatalf("read back %d results, %d servers, notes %v", len(back.results), len(back.servers), back.notes)
	}
	if got := back.find("fanout", "net", 1000); got == nil || got.median[mDeliveries] != 2.9e6 || got.problem != "lost 3" {
		t.Errorf("fanout net 1000 read back as %+v", got)
	}
	if got := back.find("idle", "gnet", 50000); got == nil || got.skipped != "too many" {
		t.Errorf("idle gnet 50000 read back as %+v", got)
	}
	if from, err := replot(dir); err != nil || from != savedFile {
		t.Fatalf("replot: from %q, %v", from, err)
	}
	for _, png := range []string{"fanout.png", "idle.png"} {
		if _, err := os.Stat(filepath.Join(dir, png)); err != nil {
			t.Errorf("replot: %v", err)
		}
	}
}

// TestReadResultsMD reads back the figures of a RESULTS.md, as printed.
func TestReadResultsMD(t *testing.T) {
	r := sampleRunner()
	r.cfg.Scenarios = allScenarios
	r.results = append(r.results,
		&result{scenario: "latency", server: "net", point: 1000, runs: 1, median: metrics{mP50: 1.234e6, mP99: 1.32e9, mP999: 183, mCPUPercent: 55}},
		&result{scenario: "echo", server: "gnet", point: 100, runs: 1, median: metrics{mEchoes: 38600, mEchoMiB: 37, mCPUDelivery: 5000}},
		&result{scenario: "scale", server: "gnet", point: 19000, runs: 1, median: metrics{mConnectSecs: 2.5, mRSS: 104.6 * 1024 * 1024}},
	)
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	back, err := readResultsMD(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.servers) != 3 || back.servers[1].name != "net" {
		t.Errorf("servers read back: %v", back.servers)
	}
	for _, want := range r.results {
		if want.skipped != "" || want.median == nil {
			continue
		}
		got := back.find(want.scenario, want.server, want.point)
		if got == nil {
			t.Errorf("%s %s %d: not read back", want.scenario, want.server, want.point)
			continue
		}
		if (want.problem != "") != (got.problem != "") {
			t.Errorf("%s %s %d: problem %q read back as %q", want.scenario, want.server, want.point, want.problem, got.problem)
		}
		for m, v := range want.median {
			g, ok := got.median[m]
			if !ok {
				continue // not a column of its table
			}
			if d := g - v; d > 0.01*v || d < -0.01*v {
				t.Errorf("%s %s %d: %s %g read back as %g", want.scenario, want.server, want.point, m, v, g)
			}
		}
	}
	if got := back.find("latency", "net", 1000); got == nil || len(got.median) != 4 {
		t.Errorf("latency net 1000 read back as %+v", got)
	}
	from, err := replot(dir)
	if err != nil || from != "RESULTS.md's tables" {
		t.Errorf("replot without results.json: from %q, %v", from, err)
	}
}
