package models

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the report's machine and tables.
func Markdown(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s, %s; RLIMIT_NOFILE %d; run %s, took %v.\n\n",
		r.CPU, r.Cores, r.Kernel, r.Go, r.NoFile, r.Date, r.Duration.Round(time.Second))
	c := r.Config
	fmt.Fprintf(&b, "Active load: K=%d clients × %.0f msg/s, %d-byte messages, %v warm-up, %v window; idle window %v.\n\n",
		c.K, c.Rate, c.Size, c.Warmup, c.Window, c.IdleFor)
	b.WriteString("| model | N | CPU µs/msg | user s | sys s | CPU % | p50 µs | p99 µs | ctx sw/msg (vol+invol) | threads | RSS/conn KiB | idle CPU % | idle wake-ups/s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var skipped []Point
	for _, p := range r.Points {
		if p.Skipped != "" {
			skipped = append(skipped, p)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f | %.2f | %.2f | %.1f | %.0f | %.0f | %.2f (%d+%d) | %d | %.2f | %.3f | %.1f |\n",
			p.Model, p.N, p.CPUPerMsgUS, p.CPUUser, p.CPUSystem, p.CPUPercent, p.P50US, p.P99US,
			p.CtxPerMsg, p.VolCtx, p.InvolCtx, p.Threads, p.RSSPerConnKB, p.IdleCPUPercent, p.IdleWakeups)
	}
	if len(skipped) > 0 {
		b.WriteString("\nSkipped points:\n\n")
		for _, p := range skipped {
			fmt.Fprintf(&b, "- %s, N=%d: %s\n", p.Model, p.N, p.Skipped)
		}
	}
	return b.String()
}
