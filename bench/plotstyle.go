package main

import (
	"hash/fnv"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// knownServers are the servers the runner knows, in the order they run;
// each has its own colour, shape and dash in every plot.
var knownServers = []string{"cport/uring", "cport/epoll", "cport/portable", "net", "gnet", "nbio"}

// serverColors gives each known server one colour in every plot: the
// Okabe-Ito palette, which colour-blind readers can tell apart; the cport
// engines in blues and purple, the peers in black, orange and green.
var serverColors = map[string]color.RGBA{
	"cport/uring":    {0x00, 0x72, 0xB2, 0xFF}, // blue
	"cport/epoll":    {0x56, 0xB4, 0xE9, 0xFF}, // sky blue
	"cport/portable": {0xCC, 0x79, 0xA7, 0xFF}, // reddish purple
	"net":            {0x00, 0x00, 0x00, 0xFF}, // black
	"gnet":           {0xE6, 0x9F, 0x00, 0xFF}, // orange
	"nbio":           {0x00, 0x9E, 0x73, 0xFF}, // bluish green
}

// spareColors are for servers the map does not know (a new peer), picked
// by a hash of the name so that it keeps its colour from plot to plot.
var spareColors = []color.RGBA{
	{0xD5, 0x5E, 0x00, 0xFF}, // vermillion
	{0xF0, 0xE4, 0x42, 0xFF}, // yellow
	{0x88, 0x88, 0x88, 0xFF}, // grey
	{0x8B, 0x45, 0x13, 0xFF}, // brown
}

// serverColor returns the colour of server in every plot.
func serverColor(server string) color.RGBA {
	if c, ok := serverColors[server]; ok {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(server))
	return spareColors[h.Sum32()%uint32(len(spareColors))]
}

// serverIndex returns server's place among knownServers (or past them, by
// hash), for its glyph shape and line dashes.
func serverIndex(server string) int {
	for i, s := range knownServers {
		if s == server {
			return i
		}
	}
	h := fnv.New32a()
	h.Write([]byte(server))
	return len(knownServers) + int(h.Sum32()%8)
}

// fmtSI prints an axis value with an SI suffix and no more digits than it
// needs: 0, 500, 1k, 2.5k, 10k, 1.5M.
func fmtSI(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return strconv.FormatFloat(v/1e9, 'g', 3, 64) + "G"
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// logTicks marks a log axis: a labelled tick at 1, 2 and 5 times each power
// of ten (only at the powers of ten when the axis spans more than three
// decades), an unlabelled one at the other multiples.
type logTicks struct {
	format func(float64) string // label of a major tick
}

// Ticks implements plot.Ticker.
func (t logTicks) Ticks(min, max float64) []plot.Tick {
	if min <= 0 || max < min {
		return nil
	}
	format := t.format
	if format == nil {
		format = fmtSI
	}
	lo, hi := math.Floor(math.Log10(min)), math.Ceil(math.Log10(max))
	onlyDecades := hi-lo > 3
	var ticks []plot.Tick
	for e := lo; e <= hi; e++ {
		p := math.Pow(10, e)
		for m := 1.0; m <= 9; m++ {
			v := m * p
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			major := m == 1 || (!onlyDecades && (m == 2 || m == 5))
			tk := plot.Tick{Value: v}
			if major {
				tk.Label = format(v)
			}
			ticks = append(ticks, tk)
		}
	}
	return ticks
}

// linearTicks marks a linear axis at 1, 2 or 5 times a power of ten, the
// step that gives 4 to 10 labelled ticks, with an unlabelled tick halfway.
type linearTicks struct {
	format func(float64) string // label of a major tick
}

// Ticks implements plot.Ticker.
func (t linearTicks) Ticks(min, max float64) []plot.Tick {
	if !(max > min) {
		return []plot.Tick{{Value: min, Label: t.label(min)}}
	}
	step := niceStep(max - min)
	var ticks []plot.Tick
	for v := math.Ceil(min/step) * step; v <= max+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		ticks = append(ticks, plot.Tick{Value: v, Label: t.label(v)})
		if mid := v + step/2; mid <= max {
			ticks = append(ticks, plot.Tick{Value: mid})
		}
	}
	return ticks
}

func (t linearTicks) label(v float64) string {
	if t.format == nil {
		return fmtSI(v)
	}
	return t.format(v)
}

// niceStep returns the step of 1, 2 or 5 times a power of ten that cuts
// span into 4 to 10 parts.
func niceStep(span float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(span)))
	for _, m := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10} {
		if span/(m*p) <= 10 {
			return m * p
		}
	}
	return 10 * p
}

// Sizes of a saved plot.
const (
	plotWidth   = 9 * vg.Inch
	plotHeight  = 4.5 * vg.Inch
	plotMargin  = 12 // points around everything, so that no text touches the edge
	legendGap   = 10 // points between the plot and its legend
	titleSize   = 14
	axisSize    = 12
	tickSize    = 11
	legendSize  = 11
	legendThumb = 22 // points
)

// style sets the plot's fonts and paddings.
func style(p *plot.Plot) {
	p.Title.TextStyle.Font.Size = titleSize
	p.Title.Padding = vg.Points(10)
	p.X.Label.TextStyle.Font.Size = axisSize
	p.Y.Label.TextStyle.Font.Size = axisSize
	p.X.Tick.Label.Font.Size = tickSize
	p.Y.Tick.Label.Font.Size = tickSize
	p.X.Label.Padding = vg.Points(6)
	p.Y.Label.Padding = vg.Points(6)
}

// newLegend returns a legend drawn beside the plot, not over its data.
func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font.Size = legendSize
	l.ThumbnailWidth = vg.Points(legendThumb)
	l.Top, l.Left = true, true
	l.Padding = vg.Points(5)
	return l
}

// legendWidth is the width the legend's longest entry needs.
func legendWidth(l plot.Legend, names []string) vg.Length {
	var w vg.Length
	for _, n := range names {
		w = max(w, l.TextStyle.Width(n))
	}
	return w + l.ThumbnailWidth + l.TextStyle.Width("  ") + vg.Points(legendGap)
}

// drawWithLegend draws p on c, with the legend in a column of its own on
// the right, its top level with the top of the data area.
func drawWithLegend(c draw.Canvas, p *plot.Plot, l plot.Legend, names []string) {
	c.SetColor(color.White)
	c.Fill(c.Rectangle.Path())
	inner := draw.Crop(c, plotMargin, -plotMargin, plotMargin, -plotMargin)
	lw := legendWidth(l, names)
	p.Draw(draw.Crop(inner, 0, -lw, 0, 0))
	if p.Title.Text != "" {
		l.YOffs = -(p.Title.TextStyle.Height(p.Title.Text) + p.Title.Padding)
	}
	right := draw.Crop(inner, inner.Max.X-inner.Min.X-lw+vg.Points(legendGap), 0, 0, 0)
	l.Draw(right)
}
