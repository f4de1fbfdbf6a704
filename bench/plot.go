package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// A figure is a plot and the legend drawn beside it.
type figure struct {
	plot   *plot.Plot
	legend plot.Legend
	names  []string // the legend's entries
}

// plots writes the PNGs that RESULTS.md shows, for the scenarios that ran.
func (r *runner) plots(dir string) error {
	figs := []struct {
		name string
		fig  *figure
	}{
		{"fanout.png", r.linePlot("fanout", mDeliveries, "Fan-out: deliveries per second (closed loop, 10 senders, 64 B; higher is better)", "clients (log scale)", "deliveries per second (1/s)")},
		{"latency.png", r.metricBarPlot("latency", []string{mP50, mP99, mP999}, 1e-6, "Latency at a fixed rate, 1,000 clients (lower is better)", "latency (ms)")},
		{"idle.png", r.pointBarPlot("idle", mRSSPerConn, 1.0/1024, "Idle connections: server RSS per connection (lower is better)", "RSS per connection (KiB)")},
		{"echo.png", r.pointBarPlot("echo", mEchoes, 1, "Echo, 1 KiB messages (the gnet benchmarks' workload; higher is better)", "echoes per second (1/s)")},
		{"echo-small.png", r.pointBarPlot("echo-small", mEchoes, 1, "Echo, 64 B messages (higher is better)", "echoes per second (1/s)")},
	}
	for _, f := range figs {
		if f.fig == nil {
			continue
		}
		if err := f.fig.save(filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// save writes the figure as a PNG.
func (f *figure) save(file string) error {
	img := vgimg.New(plotWidth, plotHeight)
	drawWithLegend(draw.New(img), f.plot, f.legend, f.names)
	w, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// ran returns the results of scenario that have figures.
func (r *runner) ran(scenario string) []*result {
	var out []*result
	for _, res := range r.results {
		if res.scenario == scenario && res.skipped == "" && res.median != nil {
			out = append(out, res)
		}
	}
	return out
}

// serverNames returns the servers of results in the order they ran.
func serverNames(results []*result) []string {
	var names []string
	for _, res := range results {
		if !slices.Contains(names, res.server) {
			names = append(names, res.server)
		}
	}
	return names
}

// newPlot returns a styled plot with its titles.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	style(p)
	return p
}

// linePlot draws metric against the point (log scale), a line per server.
func (r *runner) linePlot(scenario, metric, title, x, y string) *figure {
	results := r.ran(scenario)
	if len(results) == 0 {
		return nil
	}
	p := newPlot(title, x, y)
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, logTicks{}
	f := &figure{plot: p, legend: newLegend()}
	p.Add(plotter.NewGrid()) // first, under the lines
	for _, name := range serverNames(results) {
		var xys plotter.XYs
		for _, res := range results {
			if v, ok := res.median[metric]; ok && res.server == name {
				xys = append(xys, plotter.XY{X: float64(res.point), Y: v})
			}
		}
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			continue
		}
		i := serverIndex(name)
		l.Color, s.Color, s.Shape = serverColor(name), serverColor(name), plotutil.Shape(i)
		l.Width, s.Radius = vg.Points(1.5), vg.Points(3.5)
		l.Dashes = plotutil.Dashes(i)
		p.Add(l, s)
		f.legend.Add(name, l, s)
		f.names = append(f.names, name)
	}
	fromZero(p, linearTicks{})
	// One point alone gives the log axis no range: widen it to a decade.
	if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min/2, p.X.Max*2
	}
	p.X.Min, p.X.Max = p.X.Min/1.15, p.X.Max*1.15 // the end points' glyphs whole
	return f
}

// fromZero starts the Y axis at 0, leaves a little room above the data and
// labels it with ticks.
func fromZero(p *plot.Plot, t plot.Ticker) {
	p.Y.Min = 0
	p.Y.Max *= 1.08
	p.Y.Tick.Marker = t
}

// groupedBars draws a group of bars per label on the X axis, one bar per
// server in each, in the server's colour; value returns the bar of server
// in group g.
func groupedBars(p *plot.Plot, groups, names []string, value func(g int, server string) float64) *figure {
	f := &figure{plot: p, legend: newLegend(), names: names}
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // the groups need no vertical lines through their bars
	p.Add(grid)               // first, under the bars
	// The data area is about 6.5 inches wide; the bars of a group fill 80%
	// of its share.
	w := vg.Length(float64(6.5*vg.Inch) * 0.8 / float64(len(groups)*len(names)))
	w = min(w, vg.Points(40))
	for i, name := range names {
		vals := make(plotter.Values, len(groups))
		for g := range groups {
			vals[g] = value(g, name)
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			continue
		}
		bars.Color = serverColor(name)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(names)-1)/2)
		p.Add(bars)
		f.legend.Add(name, bars)
	}
	p.NominalX(groups...)
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	fromZero(p, linearTicks{})
	return f
}

// metricBarPlot draws, for scenario's one point, a group of bars per
// metric, a bar per server, scaled by scale.
func (r *runner) metricBarPlot(scenario string, ms []string, scale float64, title, y string) *figure {
	results := r.ran(scenario)
	if len(results) == 0 {
		return nil
	}
	p := newPlot(title, "", y)
	return groupedBars(p, ms, serverNames(results), func(g int, server string) float64 {
		for _, res := range results {
			if res.server == server {
				return res.median[ms[g]] * scale
			}
		}
		return 0
	})
}

// pointBarPlot draws metric scaled by scale, a group of bars per point, a
// bar per server.
func (r *runner) pointBarPlot(scenario, metric string, scale float64, title, y string) *figure {
	results := r.ran(scenario)
	if len(results) == 0 {
		return nil
	}
	var points []int
	for _, res := range results {
		if !slices.Contains(points, res.point) {
			points = append(points, res.point)
		}
	}
	groups := make([]string, len(points))
	for i, n := range points {
		groups[i] = fmt.Sprintf("%s %s", fmtCount(n), pointUnit(scenario))
	}
	p := newPlot(title, "", y)
	return groupedBars(p, groups, serverNames(results), func(g int, server string) float64 {
		for _, res := range results {
			if res.server == server && res.point == points[g] {
				return res.median[metric] * scale
			}
		}
		return 0
	})
}
