package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The WebSocket scenario runs on the run's first cport server, its
// gateway and wspeer, driven with --ws where the address is a WebSocket
// one.
func TestWSServers(t *testing.T) {
	r := &runner{servers: sixServers()}
	var names []string
	for _, s := range r.wsServers() {
		names = append(names, s.name)
		args := loadArgs{addr: "127.0.0.1:1", ws: s.ws, clients: 10, senders: 1, size: 64}.args()
		if s.ws != slices.Contains(args, "--ws") || s.ws == slices.Contains(args, "--framing") {
			t.Errorf("%s: cport %v", s.name, args)
		}
	}
	if want := []string{"cport/uring", "cport/uring ws", "wspeer"}; !slices.Equal(names, want) {
		t.Errorf("servers %q, want %q", names, want)
	}
	ws := r.wsServers()[1].relay("127.0.0.1:7")
	if i := slices.Index(ws, "--ws-addr"); i < 0 || ws[i+1] != "127.0.0.1:7" || !slices.Contains(ws, "uring") {
		t.Errorf("the gateway's command line: %q", ws)
	}

	r.servers = r.servers[3:] // net, gnet, nbio
	names = names[:0]
	for _, s := range r.wsServers() {
		names = append(names, s.name)
	}
	if want := []string{"cport/auto ws", "wspeer"}; !slices.Equal(names, want) {
		t.Errorf("without cport servers: %q, want %q", names, want)
	}
}

// The summary gives the ws scenario's servers columns of their own, and
// RESULTS.md its table.
func TestWSSummary(t *testing.T) {
	r := sampleRunner()
	r.cfg.Scenarios = append(r.cfg.Scenarios, "ws")
	r.results = append(r.results,
		&result{scenario: "ws", server: "cport/uring", point: 1000, runs: 1, median: metrics{mCPUDelivery: 150}},
		&result{scenario: "ws", server: "cport/uring ws", point: 1000, runs: 1, median: metrics{mCPUDelivery: 210}},
		&result{scenario: "ws", server: "wspeer", point: 1000, runs: 1, median: metrics{mCPUDelivery: 2500}},
	)
	var b strings.Builder
	r.summaryTable(&b)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if g, c, w := strings.Index(lines[0], "gnet"), strings.Index(lines[0], "cport/uring ws"), strings.Index(lines[0], "wspeer"); g < 0 || c < g || w < c {
		t.Errorf("header %q: want the ws servers after the run's", lines[0])
	}
	last := strings.Fields(lines[len(lines)-1])
	if want := []string{"ws", "1,000", "clients", "server", "CPU/delivery", "(lower", "is", "better)", "150ns", "–", "–", "210ns", "2.5µs"}; !slices.Equal(last, want) {
		t.Errorf("ws line %q, want the fields %q", last, want)
	}
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "## WebSocket fan-out") || !strings.Contains(string(md), "| 1000 | `wspeer` |") {
		t.Errorf("RESULTS.md has no WebSocket table:\n%s", md)
	}
}
