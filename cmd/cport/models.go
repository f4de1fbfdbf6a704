package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/models"
)

const modelsDoc = `Models measures the tutorial's claims about I/O models (docs/models): for
each model (select, poll, epoll, io_uring, and Go's net as goroutine per
connection) and each count N of idle connections, it runs that model's echo
server as a child process ("cport models serve": a select(2) or poll(2) loop,
or a cport port on the epoll, uring or portable engine), holds N idle
connections to it, drives --k active clients at --rate messages per second
each, and reads the child's CPU time, context switches and memory from /proc:
CPU per message, p50/p99 latency, context switches per message, RSS per
connection, then idle CPU and wake-ups per second with every connection
quiet. Points the model or the open-files limit cannot hold are skipped with
the reason. --quick runs N = 10, 100, 1000 with short windows (under a
minute); --json writes the report for "go run ./cmd/modelplot" in bench/.`

func runModels(fs *flag.FlagSet, args []string) error {
	var (
		quick   = fs.Bool("quick", false, "N = 10, 100, 1000 and short windows: under a minute")
		jsonOut = fs.String("json", "", "write the report as JSON to this `file`")
		mdOut   = fs.String("md", "", "write the result tables as Markdown to this `file`")
		only    = fs.String("models", "", "comma-separated `models` to run (default all: "+modelNames()+")")
		ns      = fs.String("n", "", "comma-separated idle-connection `counts`, each 1 or more (default 10,100,1000,10000,50000)")
		k       int
		rate    float64
		window  time.Duration
		idle    time.Duration
	)
	intVar(fs, &k, "k", 10, 1, noMax, "active clients: a `number`, 1 or more")
	floatVar(fs, &rate, "rate", 200, true, "messages per second per active client: a `rate` above 0")
	durationVar(fs, &window, "window", 0, false, "measured active window per point: a `duration` (0: 3s, quick 1s)")
	durationVar(fs, &idle, "idle", 0, false, "idle window per point: a `duration` (0: 2s, quick 700ms)")
	if err := parse(fs, args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := models.Config{Exe: exe, K: k, Rate: rate, Window: window, IdleFor: idle, Log: os.Stderr}
	if *quick {
		cfg.Ns = models.QuickNs
		cfg.Warmup = 300 * time.Millisecond
		if cfg.Window == 0 {
			cfg.Window = time.Second
		}
		if cfg.IdleFor == 0 {
			cfg.IdleFor = 700 * time.Millisecond
		}
	}
	if *ns != "" {
		cfg.Ns = nil
		for _, s := range strings.Split(*ns, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return usageErr(fs, "--n: must be counts of 1 or more, comma-separated, got %q in %s", s, *ns)
			}
			cfg.Ns = append(cfg.Ns, n)
		}
	}
	if *only != "" {
		for _, name := range strings.Split(*only, ",") {
			found := false
			for _, m := range models.Models {
				if m.Name == strings.TrimSpace(name) || m.Backend == strings.TrimSpace(name) {
					cfg.Models = append(cfg.Models, m)
					found = true
				}
			}
			if !found {
				return usageErr(fs, "--models: must be models among %s, comma-separated, got %q", modelNames(), name)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := models.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	if *jsonOut != "" {
		b, jerr := json.MarshalIndent(rep, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if jerr != nil {
			return errors.Join(err, jerr)
		}
	}
	md := models.Markdown(rep)
	if *mdOut != "" {
		if werr := os.WriteFile(*mdOut, []byte(md), 0o644); werr != nil {
			return errors.Join(err, werr)
		}
	} else {
		fmt.Print(md)
	}
	failed, first := 0, ""
	for _, p := range rep.Points {
		if p.Failed {
			if failed == 0 {
				first = p.Skipped
			}
			failed++
		}
	}
	fmt.Fprintf(os.Stderr, "cport models: %d points in %v\n", len(rep.Points), rep.Duration.Round(time.Second))
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d of %d points failed (first: %s)", failed, len(rep.Points), first)
	}
	return err
}

func modelNames() string {
	var s []string
	for _, m := range models.Models {
		s = append(s, m.Name)
	}
	return strings.Join(s, ", ")
}

// runModelsServe is the child: the echo server of one model.
func runModelsServe(fs *flag.FlagSet, args []string) error {
	var backend string
	choiceVar(fs, &backend, "backend", "epoll", append([]string{"select", "poll"}, cport.Backends()...), "the `model`'s server: select, poll, or a cport engine")
	addr := fs.String("addr", "127.0.0.1:0", "TCP `address` to listen on")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return models.Serve(ctx, backend, *addr, os.Stderr, func(a string) {
		fmt.Printf("listening %s\n", a)
	})
}
