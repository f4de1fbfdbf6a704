package main

import (
	"fmt"
	"math"
	"time"
)

// fmtRate prints a rate with three significant digits.
func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtNs prints nanoseconds as a duration with three significant digits.
func fmtNs(ns float64) string {
	d := time.Duration(ns)
	if d <= 0 {
		return "0"
	}
	for unit := time.Duration(1); unit < time.Hour; unit *= 10 {
		if d < 1000*unit {
			return d.Round(unit).String()
		}
	}
	return d.Round(time.Second).String()
}

// fmtBytes prints a byte count in binary units.
func fmtBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// fmtCount prints a count with thousands separators: 10,000.
func fmtCount(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + fmtCount(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// pointUnit names what a scenario's point counts.
func pointUnit(scenario string) string {
	for _, t := range tables {
		if t.scenario == scenario && t.pointCol != "" {
			return t.pointCol
		}
	}
	return "clients"
}
