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
	if err := replot(dir); err == nil || !strings.Contains(err.Error(), "no results.json") {
		t.Errorf("replot of a directory without results.json: %v", err)
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
	if err := replot(dir); err != nil {
		t.Fatal(err)
	}
	for _, png := range []string{"fanout.png", "idle.png"} {
		if _, err := os.Stat(filepath.Join(dir, png)); err != nil {
			t.Errorf("replot: %v", err)
		}
	}
}
