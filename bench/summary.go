package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// A headline is the one figure of a scenario the summary shows.
type headline struct {
	metric string
	name   string // what it is, with its unit where the value has none
	format func(float64) string
}

var headlines = map[string]headline{
	"fanout":     {mDeliveries, "deliveries/s (higher is better)", fmtRate},
	"latency":    {mP99, "p99 latency (lower is better)", nsStr},
	"idle":       {mRSSPerConn, "RSS per connection (lower is better)", fmtBytes},
	"scale":      {mBroadcastP99, "broadcast p99 latency (lower is better)", nsStr},
	"echo":       {mEchoes, "echoes/s (higher is better)", fmtRate},
	"echo-small": {mEchoes, "echoes/s (higher is better)", fmtRate},
	"echo-paced": {mP99, "round trip p99 (lower is better)", nsStr},
	"ws":         {mCPUDelivery, "server CPU/delivery (lower is better)", nsStr},
}

// summaryTable writes, for each scenario and point that ran, its headline
// figure on every server: a line per point, a column per server.
func (r *runner) summaryTable(w io.Writer) {
	var servers []string
	for _, s := range r.servers {
		servers = append(servers, s.name)
	}
	for _, res := range r.results { // the servers of scenarios of their own (ws)
		if !slices.Contains(servers, res.server) {
			servers = append(servers, res.server)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\tpoint\tfigure\t%s\n", strings.Join(servers, "\t"))
	for _, sc := range allScenarios {
		h, ok := headlines[sc]
		if !ok || !contains(r.cfg.Scenarios, sc) {
			continue
		}
		var points []int
		for _, res := range r.results {
			if res.scenario == sc && !slices.Contains(points, res.point) {
				points = append(points, res.point)
			}
		}
		for _, n := range points {
			cells := []string{sc, fmtCount(n) + " " + pointUnit(sc), h.name}
			for _, s := range servers {
				cells = append(cells, summaryCell(r.find(sc, s, n), h))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
	tw.Flush()
}

// summaryCell is a result's headline figure, ⚠ if the run had a problem.
func summaryCell(res *result, h headline) string {
	switch {
	case res == nil:
		return "–"
	case res.skipped != "":
		return "skipped"
	}
	v, ok := res.value(h.metric)
	if !ok {
		return "failed"
	}
	if res.problem != "" {
		return h.format(v) + " ⚠"
	}
	return h.format(v)
}
