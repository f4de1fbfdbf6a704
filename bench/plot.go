package main

import (
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plots writes the PNGs that RESULTS.md shows, for the scenarios that ran.
func (r *runner) plots(dir string) error {
	var err error
	save := func(name string, p *plot.Plot) {
		if err == nil && p != nil {
			err = p.Save(9*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, name))
		}
	}
	save("fanout.png", r.linePlot("fanout", mDeliveries, "Fan-out: deliveries per second (closed loop, 10 senders, 64 B)", "clients", "deliveries/s"))
	save("latency.png", r.barPlot("latency", []string{mP50, mP99, mP999}, 1e-6, "Latency at a fixed rate, 1,000 clients (lower is better)", "ms"))
	save("idle.png", r.pointBarPlot("idle", mRSSPerConn, 1.0/1024, "Idle connections: server RSS per connection (lower is better)", "KiB per connection"))
	save("echo.png", r.pointBarPlot("echo", mEchoes, 1e-3, "Echo, 1 KiB (the gnet benchmarks' workload)", "thousand echoes/s"))
	save("echo-small.png", r.pointBarPlot("echo-small", mEchoes, 1e-3, "Echo, 64 B", "thousand echoes/s"))
	return err
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

// linePlot draws metric against the point (log scale), a line per server.
func (r *runner) linePlot(scenario, metric, title, x, y string) *plot.Plot {
	results := r.ran(scenario)
	if len(results) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, false
	for i, name := range serverNames(results) {
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
		l.Color, s.Color, s.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
		l.Dashes = plotutil.Dashes(i)
		p.Add(l, s)
		p.Legend.Add(name, l, s)
	}
	p.Add(plotter.NewGrid())
	p.Y.Tick.Marker = rateTicks{}
	headroom(p)
	return p
}

// rateTicks labels the default ticks as rates: 2M, 500k.
type rateTicks struct{}

func (rateTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = fmtRate(ticks[i].Value)
		}
	}
	return ticks
}

// headroom starts the Y axis at 0 and leaves room above the data for the
// legend.
func headroom(p *plot.Plot) {
	p.Y.Min = 0
	p.Y.Max *= 1.35
}

// barPlot draws, for one point, a group of bars per server: one bar per
// metric, scaled by scale.
func (r *runner) barPlot(scenario string, ms []string, scale float64, title, y string) *plot.Plot {
	results := r.ran(scenario)
	if len(results) == 0 {
		return nil
	}
	names := serverNames(results)
	p := plot.New()
	p.Title.Text, p.Y.Label.Text = title, y
	w := vg.Points(60 / float64(len(ms)))
	for j, m := range ms {
		vals := make(plotter.Values, len(names))
		for i, name := range names {
			for _, res := range results {
				if res.server == name {
					vals[i] = res.median[m] * scale
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			continue
		}
		bars.Color = plotutil.Color(j)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(j)-float64(len(ms)-1)/2)
		p.Add(bars)
		p.Legend.Add(m, bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4 // whole bars at the edges
	p.Add(plotter.NewGrid())
	headroom(p)
	return p
}

// pointBarPlot draws metric per server, a group of bars per point.
func (r *runner) pointBarPlot(scenario, metric string, scale float64, title, y string) *plot.Plot {
	results := r.ran(scenario)
	if len(results) == 0 {
		return nil
	}
	names := serverNames(results)
	var points []int
	for _, res := range results {
		if !slices.Contains(points, res.point) {
			points = append(points, res.point)
		}
	}
	p := plot.New()
	p.Title.Text, p.Y.Label.Text = title, y
	w := vg.Points(60 / float64(len(points)))
	for j, pt := range points {
		vals := make(plotter.Values, len(names))
		for i, name := range names {
			for _, res := range results {
				if res.server == name && res.point == pt {
					vals[i] = res.median[metric] * scale
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			continue
		}
		bars.Color = plotutil.Color(j)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(j)-float64(len(points)-1)/2)
		p.Add(bars)
		p.Legend.Add(fmt.Sprintf("%d %s", pt, map[string]string{"idle": "connections", "echo": "connections", "echo-small": "connections"}[scenario]), bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4 // whole bars at the edges
	p.Add(plotter.NewGrid())
	headroom(p)
	return p
}
