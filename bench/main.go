// Command bench measures cport's chat server, on every engine this machine
// offers, against peer servers of the same protocol written on Go's net,
// gnet and nbio, with the same scenarios driven by cport load, and writes
// RESULTS.md, results.json and the plots into a new directory (or, with
// --docs, into docs/bench).
//
// Usage (from this directory):
//
//	go run .                 # the full run: about 14 minutes on 2 cores; a new directory under the OS temp dir
//	go run . --docs          # the same, writing docs/bench (the committed results)
//	go run . --quick         # a short run that keeps the runner alive (CI): under 2 minutes
//	go run . --replot DIR    # redraw DIR's plots from its results.json (else RESULTS.md's tables), running nothing
//
// See README.md for what each scenario measures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Config is the command line.
type Config struct {
	Quick      bool
	Out        string        // where RESULTS.md and the plots go
	Docs       bool          // Out is docs/bench
	Replot     string        // redraw the plots of this directory and stop
	Repeat     int           // runs per point; the median is reported
	Duration   time.Duration // measured window of a load run
	Warmup     time.Duration // load before the window
	IdleWindow time.Duration // idle scenario: how long connections are held and measured
	Servers    []string      // names to run (empty: all)
	Scenarios  []string      // names to run
	PerProcess int           // most clients one load process opens
	Workers    int           // --workers of every server (0: their default)
	EchoModel  string        // --model of cportecho: handler or queue
}

var allScenarios = []string{"fanout", "latency", "idle", "scale", "echo", "echo-small", "echo-paced", "ws"}

func parseFlags(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&c.Quick, "quick", false, "a short run (1 repeat, short windows, fewer points) that finishes in under 2 minutes")
	fs.StringVar(&c.Out, "out", "", "`directory` for RESULTS.md, results.json and the plots (default: a new directory cport-bench-<date>-<time> in the OS temp dir)")
	fs.BoolVar(&c.Docs, "docs", false, "write the committed results, docs/bench (RESULTS.md, results.json, the plots), instead of a new directory")
	fs.StringVar(&c.Replot, "replot", "", "redraw the plots of `directory` from its results.json (else from its RESULTS.md's tables), run nothing, and stop")
	fs.IntVar(&c.Repeat, "repeat", 0, "runs of each point, of which the median is reported (default 3; --quick 1)")
	fs.DurationVar(&c.Duration, "duration", 0, "measured window of each load run (default 5s; --quick 1s)")
	fs.DurationVar(&c.Warmup, "warmup", 0, "load before each measured window (default 1s; --quick 0.3s)")
	fs.DurationVar(&c.IdleWindow, "idle-window", 0, "idle scenario: how long the connections are held while CPU is measured (default 5s; --quick 1s)")
	servers := fs.String("servers", "", "comma-separated servers to run, e.g. net,gnet,cport/uring (default: all)")
	scenarios := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run")
	fs.IntVar(&c.PerProcess, "per-process", 0, "most clients per load process (default 19000, under the open-files limit; --quick 1000, so that CI exercises the split over several processes)")
	fs.IntVar(&c.Workers, "workers", 0, "--workers passed to every server (0: each server's default, GOMAXPROCS)")
	fs.StringVar(&c.EchoModel, "echo-model", "handler", "cportecho's `model`: handler (completions run where they complete) or queue (workers)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Docs && c.Out != "" {
		return c, fmt.Errorf("--docs and --out: give one (--docs is --out ../docs/bench)")
	}
	if c.Replot != "" && (c.Docs || c.Out != "") {
		return c, fmt.Errorf("--replot: redraws the plots in its own directory; --out and --docs do not apply")
	}
	if c.EchoModel != "handler" && c.EchoModel != "queue" {
		return c, fmt.Errorf("--echo-model %q: want handler or queue", c.EchoModel)
	}
	def := func(d *time.Duration, full, quick time.Duration) {
		if *d <= 0 {
			*d = full
			if c.Quick {
				*d = quick
			}
		}
	}
	def(&c.Duration, 5*time.Second, time.Second)
	def(&c.Warmup, time.Second, 300*time.Millisecond)
	def(&c.IdleWindow, 5*time.Second, time.Second)
	if c.Repeat <= 0 {
		c.Repeat = 3
		if c.Quick {
			c.Repeat = 1
		}
	}
	if c.PerProcess <= 0 {
		c.PerProcess = 19000
		if c.Quick {
			c.PerProcess = 1000
		}
	}
	if *servers != "" {
		c.Servers = strings.Split(*servers, ",")
	}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !contains(allScenarios, s) {
			return c, fmt.Errorf("--scenarios: unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		c.Scenarios = append(c.Scenarios, s)
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg Config) error {
	start := time.Now()
	if cfg.Replot != "" {
		from, err := replot(cfg.Replot)
		if err != nil {
			return err
		}
		progress("redrew the plots in %s from its %s", cfg.Replot, from)
		return nil
	}
	dirs, err := findDirs()
	if err != nil {
		return err
	}
	switch {
	case cfg.Docs:
		cfg.Out = filepath.Join(dirs.root, "docs", "bench")
	case cfg.Out == "":
		cfg.Out = defaultOut(start)
	}
	progress("results will go to %s", cfg.Out)
	limit := raiseFileLimit()
	progress("open-files limit %d (soft = hard) for this runner and every server and load process it starts", limit)

	tmp, err := os.MkdirTemp("", "cport-bench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins, err := build(ctx, dirs, tmp)
	if err != nil {
		return err
	}
	progress("built cport and the peers in %s", time.Since(start).Round(100*time.Millisecond))

	r := &runner{cfg: cfg, bins: bins, limit: limit, start: start}
	r.servers = r.probeServers(ctx)
	if len(r.servers) == 0 {
		return fmt.Errorf("no server to measure")
	}
	r.announce()
	r.runAll(ctx)
	clearBar()
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: nothing written")
	}
	r.machine = describeMachine(ctx)
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	if err := r.write(cfg.Out); err != nil {
		return err
	}
	if err := r.save(cfg.Out); err != nil {
		return err
	}
	r.summaryTable(os.Stdout)
	fmt.Printf("\nResults: %s (with results.json and the plots), in %s.\n", filepath.Join(cfg.Out, "RESULTS.md"), fmtElapsed(time.Since(start)))
	progress("wrote %s and its plots in %s (%s in all)", filepath.Join(cfg.Out, "RESULTS.md"), cfg.Out, fmtElapsed(time.Since(start)))
	return nil
}

// defaultOut is where a run writes unless told: a new directory in the OS
// temp dir named after the time the run started, so that no run overwrites
// another's results, nor the committed ones.
func defaultOut(start time.Time) string {
	return filepath.Join(os.TempDir(), "cport-bench-"+start.UTC().Format("20060102-150405"))
}
