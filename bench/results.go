package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A column of a results table.
type column struct {
	title  string
	metric string
	format func(float64) string
	ratio  bool // followed by a "vs net" column
}

func pct(v float64) string   { return fmt.Sprintf("%.2f%%", v) }
func pct0(v float64) string  { return fmt.Sprintf("%.0f%%", v) }
func mib(v float64) string   { return fmt.Sprintf("%.0f", v) }
func secs(v float64) string  { return fmt.Sprintf("%.1fs", v) }
func nsStr(v float64) string { return fmtNs(v) }

// A table is how one scenario is written.
type table struct {
	scenario string
	title    string
	about    string
	pointCol string // title of the point column ("" : one point, no column)
	columns  []column
	plot     string // the PNG shown under the table, if any
}

var tables = []table{
	{scenario: "fanout", title: "Fan-out", pointCol: "clients",
		about: "Closed loop: 10 senders each keep 8 messages of 64 bytes in flight; every message goes to every client, the sender included. Deliveries are messages received by any client per second (higher is better); latency is send to receive, at every client; CPU is the server's user+system time per delivery, and beside it the load generator's own (`cport load`), so that a server is not measured by a driver heavier than itself.",
		columns: []column{
			{"deliveries/s", mDeliveries, fmtRate, true},
			{"messages/s", mAccepted, fmtRate, false},
			{"p50", mP50, nsStr, false},
			{"p99", mP99, nsStr, false},
			{"server CPU/delivery", mCPUDelivery, nsStr, true},
			{"driver CPU/delivery", mDriverCPU, nsStr, false},
			{"server RSS", mRSS, fmtBytes, false},
		}, plot: "fanout.png"},
	{scenario: "latency", title: "Latency", pointCol: "clients",
		about: "Open loop: 10 senders send 64-byte messages on a fixed schedule, together at half the rate Go net sustains in the fan-out scenario at 1,000 clients (the rate is in the notes); the latency of a late message counts from when it was due (no coordinated omission). Lower is better.",
		columns: []column{
			{"p50", mP50, nsStr, false},
			{"p99", mP99, nsStr, true},
			{"p99.9", mP999, nsStr, true},
			{"deliveries/s", mDeliveries, fmtRate, false},
			{"server CPU", mCPUPercent, pct0, false},
		}, plot: "latency.png"},
	{scenario: "idle", title: "Idle connections", pointCol: "connections",
		about: "Connections that send nothing, held by `cport load idle` processes: the server's resident memory per connection (RSS with them held minus RSS before, over the count) and its CPU use while they sit idle. Lower is better.",
		columns: []column{
			{"RSS per connection", mRSSPerConn, fmtBytes, true},
			{"idle CPU (of a core)", mIdleCPU, pct, false},
			{"server RSS", mRSS, fmtBytes, false},
		}, plot: "idle.png"},
	{scenario: "scale", title: "Scale", pointCol: "connections",
		about: "Connections held all at once, 1,000 of them checked by `cport load`, whose one sender broadcasts twice a second to all of them; the rest held idle. Broadcast latency is measured at the checked clients.",
		columns: []column{
			{"connect time", mConnectSecs, secs, false},
			{"broadcast p50", mP50, nsStr, false},
			{"broadcast p99", mBroadcastP99, nsStr, true},
			{"RSS per connection", mRSSPerConn, fmtBytes, true},
			{"server RSS", mRSS, fmtBytes, false},
		}},
	echoSection("echo", "Echo", "The workload of the published gnet benchmarks (tcpkali streaming 1 KiB messages over 1,000 connections)", "echo.png"),
	echoSection("echo-small", "Echo, 64-byte messages", "Small requests: the echo scenario with 64-byte messages instead of 1 KiB", "echo-small.png"),
	{scenario: "echo-paced", title: "Echo at low load", pointCol: "connections",
		about: "10 connections, each sending a 64-byte request 200 times a second and waiting for its echo before the next (2,000 requests/s in all), against each server's echo mode as in the echo scenarios. The round trip of every request is timed in the runner. Lower is better.",
		columns: []column{
			{"echoes/s", mEchoes, fmtRate, false},
			{"round trip p50", mP50, nsStr, true},
			{"round trip p99", mP99, nsStr, true},
			{"server CPU", mCPUPercent, pct0, false},
			{"server CPU/echo", mCPUDelivery, nsStr, true},
		}},
	{scenario: "ws", title: "WebSocket fan-out", pointCol: "clients",
		about: "The fan-out scenario (closed loop: 10 senders each keep 8 messages of 64 bytes in flight; every message to every client) with WebSocket clients, `cport load --ws`, each message one masked binary frame up and one text frame down: against `cport serve`'s gateway (`--ws-addr`: WebSocket clients in the room of the TCP ones), against `wspeer` (bench/peers: github.com/coder/websocket, a reader and a writer goroutine per connection, a bounded channel each), and, for reference, the same `cport serve` with TCP clients (frame framing). The server's CPU time per delivery is the figure to compare (lower is better); the load generator's own is beside it.",
		columns: []column{
			{"deliveries/s", mDeliveries, fmtRate, false},
			{"messages/s", mAccepted, fmtRate, false},
			{"p50", mP50, nsStr, false},
			{"p99", mP99, nsStr, false},
			{"server CPU/delivery", mCPUDelivery, nsStr, false},
			{"driver CPU/delivery", mDriverCPU, nsStr, false},
			{"server RSS", mRSS, fmtBytes, false},
		}},
}

// echoSection is the section of an echo scenario: what, the workload, begins
// its description.
func echoSection(scenario, title, what, plot string) table {
	return table{scenario: scenario, title: title, pointCol: "connections",
		about: what + ", against each server's echo mode: the peers' `--mode echo`, and for cport `cportecho`, an echo server on the cport library with the same engine (`cport serve` only relays), its completions run on the engine's goroutines (`Config.Handler`) unless `--echo-model queue` says otherwise. Each connection keeps 4 messages in flight; every echoed byte is checked. The driver runs in the runner's process, two epoll loops that read and write each connection once per wake-up, and shares the cores with the server: the server's CPU per echo compares the servers better than echoes per second. Higher echoes/s and lower CPU are better.",
		columns: []column{
			{"echoes/s", mEchoes, fmtRate, true},
			{"MiB/s each way", mEchoMiB, mib, false},
			{"server CPU", mCPUPercent, pct0, false},
			{"server CPU/echo", mCPUDelivery, nsStr, true},
		}, plot: plot}
}

// write writes RESULTS.md and the plots into dir.
func (r *runner) write(dir string) error {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "Written by the bench runner (`cd bench && go run .%s`); see [bench/README.md](../../bench/README.md) for what each scenario measures and how.\n", r.flagsLine())
	if r.cfg.Quick {
		fmt.Fprintf(&b, "\n**A quick run** (one run per point, short windows): it shows that the runner works, not what the servers can do.\n")
	}
	fmt.Fprintf(&b, "\n| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n", m.date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "| CPU | %s, %d cores |\n", m.cpu, m.cores)
	fmt.Fprintf(&b, "| memory | %s |\n", m.memory)
	fmt.Fprintf(&b, "| kernel | Linux %s |\n", m.kernel)
	fmt.Fprintf(&b, "| Go | %s |\n", m.goVer)
	fmt.Fprintf(&b, "| open files | %d per process (RLIMIT_NOFILE, soft raised to hard) |\n", r.limit)
	fmt.Fprintf(&b, "| runs | %d per point, median reported; %s measured after %s of warm-up |\n", r.cfg.Repeat, r.cfg.Duration, r.cfg.Warmup)
	names := make([]string, len(r.servers))
	for i, s := range r.servers {
		names[i] = "`" + s.name + "`"
	}
	fmt.Fprintf(&b, "| servers | %s |\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "\nServers: `cport/X` is `cport serve --backend X`; `net`, `gnet` and `nbio` are the peers in bench/peers, the same protocol on Go's net, gnet v2 and nbio. Load: `cport load`, on the same machine (2 cores shared by server and load: the figures compare servers, they are not absolute). \"vs net\" is the ratio to the Go net peer: above 1 is more for throughput, and more time or memory for costs.\n")

	for _, t := range tables {
		if !contains(r.cfg.Scenarios, t.scenario) {
			continue
		}
		r.writeTable(&b, t)
	}
	if len(r.notes) > 0 {
		fmt.Fprintf(&b, "\n## Notes\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	var problems []string
	for _, res := range r.results {
		if res.problem != "" {
			problems = append(problems, fmt.Sprintf("- %s, %s, %d: %s", res.scenario, res.server, res.point, res.problem))
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(&b, "\n## Problems\n\nRuns in which the checks failed (messages lost, duplicated, reordered or corrupted, connections dropped) or the run did not complete; their figures, where there are any, are marked with ⚠ above.\n\n%s\n", strings.Join(problems, "\n"))
	}
	if err := r.plots(dir); err != nil {
		return fmt.Errorf("plots: %v", err)
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(b.String()), 0o644)
}

// flagsLine returns the flags of the run as given, for the header.
func (r *runner) flagsLine() string {
	if len(os.Args) <= 1 {
		return ""
	}
	return " " + strings.Join(os.Args[1:], " ")
}

func (r *runner) writeTable(b *strings.Builder, t table) {
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n", t.title, t.about)
	var rows []*result
	for _, res := range r.results {
		if res.scenario == t.scenario {
			rows = append(rows, res)
		}
	}
	if len(rows) == 0 {
		fmt.Fprintf(b, "Not run.\n")
		return
	}
	// Points that were skipped get one line each, not a row per server.
	skipped := map[int]string{}
	var kept []*result
	for _, res := range rows {
		if res.skipped != "" {
			skipped[res.point] = res.skipped
			continue
		}
		kept = append(kept, res)
	}
	if len(kept) > 0 {
		head := []string{t.pointCol, "server"}
		for _, c := range t.columns {
			head = append(head, c.title)
			if c.ratio {
				head = append(head, "vs net")
			}
		}
		fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
		for _, res := range kept {
			base := r.find(t.scenario, baseline, res.point)
			cells := []string{fmt.Sprintf("%d", res.point), "`" + res.server + "`"}
			for _, c := range t.columns {
				v, ok := res.median[c.metric]
				cell := "–"
				if ok {
					cell = c.format(v)
					if res.problem != "" {
						cell += " ⚠"
					}
				}
				cells = append(cells, cell)
				if c.ratio {
					ratio := "–"
					if bv, bok := base.value(c.metric); ok && bok && bv > 0 {
						ratio = fmt.Sprintf("%.2f×", v/bv)
					}
					cells = append(cells, ratio)
				}
			}
			fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	for _, res := range rows {
		if why, ok := skipped[res.point]; ok {
			fmt.Fprintf(b, "\n%d %s: **skipped**: %s.\n", res.point, t.pointCol, why)
			delete(skipped, res.point)
		}
	}
	if t.plot != "" && len(kept) > 0 {
		fmt.Fprintf(b, "\n![%s](%s)\n", t.title, t.plot)
	}
}

// value returns a result's median of metric, if the result exists and
// holds it.
func (res *result) value(metric string) (float64, bool) {
	if res == nil || res.median == nil {
		return 0, false
	}
	v, ok := res.median[metric]
	return v, ok
}
