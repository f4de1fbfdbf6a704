// Command modelplot draws the plots of "cport models": it reads the report
// written by "cport models --json FILE" and writes cost_per_msg.png,
// rss_per_conn.png and p99.png into a directory.
//
//	cd bench && go run ./cmd/modelplot FILE ../docs/models/
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"cport.dev/cport/models"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: modelplot REPORT.json OUTDIR")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "modelplot:", err)
		os.Exit(1)
	}
}

func run(in, dir string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var rep models.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	plots := []struct {
		file, title, y string
		logY           bool
		v              func(p models.Point) float64
	}{
		{"cost_per_msg.png", "Server CPU per echoed message", "CPU µs per message", true, func(p models.Point) float64 { return p.CPUPerMsgUS }},
		{"rss_per_conn.png", "Server memory per idle connection", "RSS KiB per connection", false, func(p models.Point) float64 { return p.RSSPerConnKB }},
		{"p99.png", "p99 echo latency", "p99 latency µs", true, func(p models.Point) float64 { return p.P99US }},
	}
	for _, pl := range plots {
		p := plot.New()
		p.Title.Text = pl.title
		p.X.Label.Text = "idle connections watched (N)"
		p.Y.Label.Text = pl.y
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		if pl.logY {
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
		p.Legend.Top, p.Legend.Left = true, true
		for i, m := range rep.Config.Models {
			var xys plotter.XYs
			for _, pt := range rep.Points {
				if pt.Model == m.Name && pt.Skipped == "" && pl.v(pt) > 0 {
					xys = append(xys, plotter.XY{X: float64(pt.N), Y: pl.v(pt)})
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, s, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			l.Color, s.Color, s.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
			l.Dashes = plotutil.Dashes(i)
			p.Add(l, s)
			p.Legend.Add(m.Name, l, s)
		}
		p.Add(plotter.NewGrid())
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, pl.file)); err != nil {
			return err
		}
	}
	return nil
}
