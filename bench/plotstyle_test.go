package main

import (
	"math"
	"slices"
	"testing"

	"gonum.org/v1/plot"
)

func TestServerColors(t *testing.T) {
	seen := map[[3]uint8]string{}
	for _, s := range knownServers {
		c, ok := serverColors[s]
		if !ok {
			t.Errorf("%s has no colour of its own", s)
			continue
		}
		k := [3]uint8{c.R, c.G, c.B}
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share a colour", s, other)
		}
		seen[k] = s
		if serverColor(s) != c {
			t.Errorf("serverColor(%s) = %v, want the map's %v", s, serverColor(s), c)
		}
	}
	// An unknown server gets a spare colour, the same every time.
	c := serverColor("newpeer")
	if !slices.Contains(spareColors, c) || serverColor("newpeer") != c {
		t.Errorf("serverColor(newpeer) = %v: not a spare colour, or not stable", c)
	}
	if serverIndex("net") != 3 || serverIndex("newpeer") < len(knownServers) {
		t.Errorf("serverIndex: net %d, newpeer %d", serverIndex("net"), serverIndex("newpeer"))
	}
}

// labels returns the labelled ticks' labels and the count of unlabelled ones.
func labels(ticks []plot.Tick) (out []string, minor int) {
	for _, tk := range ticks {
		if tk.Label == "" {
			minor++
			continue
		}
		out = append(out, tk.Label)
	}
	return out, minor
}

func TestLogTicks(t *testing.T) {
	got, minor := labels(logTicks{}.Ticks(100, 10000))
	if want := []string{"100", "200", "500", "1k", "2k", "5k", "10k"}; !slices.Equal(got, want) {
		t.Errorf("100 to 10,000: labels %v, want %v", got, want)
	}
	if minor != 12 { // 300, 400, 600-900 and the same in the next decade
		t.Errorf("100 to 10,000: %d unlabelled ticks, want 12", minor)
	}
	got, _ = labels(logTicks{}.Ticks(87, 115000))
	if want := []string{"100", "1k", "10k", "100k"}; !slices.Equal(got, want) {
		t.Errorf("87 to 115,000 (over three decades): labels %v, want %v", got, want)
	}
	got, _ = labels(logTicks{}.Ticks(1e5, 2e6))
	if want := []string{"100k", "200k", "500k", "1M", "2M"}; !slices.Equal(got, want) {
		t.Errorf("100k to 2M: labels %v, want %v", got, want)
	}
	if ticks := (logTicks{}).Ticks(0, 100); ticks != nil {
		t.Errorf("a log axis from 0: %v", ticks)
	}
}

func TestLinearTicks(t *testing.T) {
	for _, c := range []struct {
		min, max float64
		want     []string
	}{
		{0, 3.3e6, []string{"0", "500k", "1M", "1.5M", "2M", "2.5M", "3M"}},
		{0, 9.5, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{0, 420, []string{"0", "50", "100", "150", "200", "250", "300", "350", "400"}},
		{0, 0.9, []string{"0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"}},
	} {
		ticks := linearTicks{}.Ticks(c.min, c.max)
		got, _ := labels(ticks)
		if !slices.Equal(got, c.want) {
			t.Errorf("%g to %g: labels %v, want %v", c.min, c.max, got, c.want)
		}
		for _, tk := range ticks {
			if tk.Value < c.min || tk.Value > c.max*(1+1e-9) || math.IsNaN(tk.Value) {
				t.Errorf("%g to %g: tick %g outside", c.min, c.max, tk.Value)
			}
		}
	}
}

func TestFmtSI(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 500: "500", 1000: "1k", 2500: "2.5k", 1e4: "10k", 1.5e6: "1.5M", 2e9: "2G", 0.5: "0.5"} {
		if got := fmtSI(v); got != want {
			t.Errorf("fmtSI(%g) = %q, want %q", v, got, want)
		}
	}
}
