package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// runOverhead is what a run costs besides its load: starting and stopping
// the server and the load processes.
const runOverhead = 300 * time.Millisecond

// runCost estimates how long one run of scenario at n connections takes,
// from the configured durations.
func (r *runner) runCost(scenario string, n int) time.Duration {
	connect := time.Duration(n) * time.Second / connectRate
	switch scenario {
	case "idle":
		// quiescent() watches the server for up to 2 s before; 0.5 s is usual.
		return runOverhead + 500*time.Millisecond + connect + r.settle() + r.cfg.IdleWindow
	case "scale":
		return runOverhead + 500*time.Millisecond + connect + r.cfg.Duration
	}
	return runOverhead + connect + r.cfg.Warmup + r.cfg.Duration
}

// A plan is the load runs ahead: how many, and how long they should take.
type plan struct {
	runs    int           // points × servers × repeats, skipped points left out
	skipped int           // runs of points this machine cannot hold
	cost    time.Duration // the estimate of all runs
}

// plan counts the runs of the configured scenarios and estimates their
// time.
func (r *runner) plan() plan {
	var p plan
	for _, sc := range r.scenarios() {
		for _, n := range sc.points(r) {
			k := len(r.serversOf(sc)) * r.cfg.Repeat
			if sc.skip(r, n) != "" {
				p.skipped += k
				continue
			}
			p.runs += k
			p.cost += time.Duration(k) * r.runCost(sc.name, n)
		}
	}
	return p
}

// announce prints the plan before the runs start.
func (r *runner) announce() {
	p := r.plan()
	r.track = &tracker{total: p.runs, cost: p.cost}
	skipped := ""
	if p.skipped > 0 {
		skipped = fmt.Sprintf(" (%d more skipped: points this machine cannot hold)", p.skipped)
	}
	repeats := "repeats"
	if r.cfg.Repeat == 1 {
		repeats = "repeat"
	}
	servers := fmt.Sprintf("%d servers", len(r.servers))
	for _, sc := range r.scenarios() {
		if sc.servers != nil {
			servers += fmt.Sprintf(" (%s: %d of its own)", sc.name, len(sc.servers(r)))
		}
	}
	progress("%d load runs (the scenarios' points × %s × %d %s)%s: about %s",
		p.runs, servers, r.cfg.Repeat, repeats, skipped, fmtElapsed(p.cost))
}

// A tracker follows the runs done against the plan.
type tracker struct {
	total int           // runs planned
	cost  time.Duration // their estimated time
	done  int           // runs done
	spent time.Duration // estimated time of the runs done
	began time.Time     // when the first run began
}

// begin marks the start of a run.
func (t *tracker) begin() {
	if t.began.IsZero() {
		t.began = time.Now()
	}
}

// end marks a run of estimated cost done, and returns the line's tail: the
// time since the runner started and the estimate of what is left.
func (t *tracker) end(cost time.Duration, sinceStart time.Duration) string {
	t.done++
	t.spent += cost
	left := estimateLeft(t.cost, t.spent, time.Since(t.began))
	return fmt.Sprintf("elapsed %s, about %s left", fmtElapsed(sinceStart), fmtElapsed(left))
}

// estimateLeft estimates the time left when runs estimated at done of the
// plan's total have taken took: the estimate of the rest, scaled by how
// far the runs so far were from theirs.
func estimateLeft(total, done, took time.Duration) time.Duration {
	rest := total - done
	if rest <= 0 {
		return 0
	}
	if done <= 0 || took <= 0 {
		return rest
	}
	return time.Duration(float64(rest) * float64(took) / float64(done))
}

// fmtElapsed prints a duration for people: 45s, 2m10s, 14m.
func fmtElapsed(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < 10*time.Minute:
		d = d.Round(10 * time.Second)
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%02ds", m, s)
	case d < 10*time.Hour:
		d = d.Round(time.Minute)
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if h == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dh%02dm", h, m)
	}
	return d.Round(time.Hour).String()
}

// stderr writes progress to standard error; on a terminal it keeps a bar
// on the last line, which each line of progress clears and redraws.
var stderr = struct {
	sync.Mutex
	tty bool
	bar string // the bar shown, if any
}{tty: isTerminal(os.Stderr)}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress prints one line of progress on standard error.
func progress(format string, args ...any) {
	stderr.Lock()
	defer stderr.Unlock()
	line := fmt.Sprintf("%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	if stderr.bar != "" {
		line = "\r\033[K" + line + stderr.bar
	}
	fmt.Fprint(os.Stderr, line)
}

// showBar draws, on a terminal only, the bar of done runs of total with the
// estimate left, under the lines of progress.
func showBar(done, total int, tail string) {
	stderr.Lock()
	defer stderr.Unlock()
	if !stderr.tty {
		return
	}
	stderr.bar = progressBar(done, total, 30) + " " + tail
	if done >= total {
		stderr.bar = ""
		fmt.Fprint(os.Stderr, "\r\033[K")
		return
	}
	fmt.Fprint(os.Stderr, "\r\033[K"+stderr.bar)
}

// clearBar takes the bar off the terminal, for good.
func clearBar() {
	stderr.Lock()
	defer stderr.Unlock()
	if stderr.bar != "" {
		stderr.bar = ""
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

// progressBar draws done of total in width cells: [=======>      ] 12/84.
func progressBar(done, total, width int) string {
	if total <= 0 {
		total = 1
	}
	done = min(max(done, 0), total)
	fill := done * width / total
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	return fmt.Sprintf("[%s] %d/%d", bar, done, total)
}
