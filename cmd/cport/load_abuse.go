package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

const loadAbuseDoc = `Load abuse attacks a running chat server and measures who pays. Each case
has three phases: a baseline, where --good clients chat (each sends --size-byte
messages, --window in flight, and checks every message it receives, as
cport load does); the abuse, where abusers attack while the good clients go
on; and a recovery. For each phase it reports the good clients' deliveries
per second, messages lost, errors and clients disconnected, the server's
descriptors, threads and memory (--server-pid) and the kernel's TCP sockets
(/proc/net/sockstat: in use, orphans, TIME-WAIT, memory); and what became
of the abusers: closed by the server, how, after how long, and how fast
they could send.

Cases (--case, comma-separated, or all):
  flooder      one client sends the smallest messages as fast as it can
  zero-flood   one client sends zero-length frames (line: empty lines)
  stalled      a tenth of --good more clients never read (SO_RCVBUF 4 KiB)
  drip         one client starts a message and sends a byte per --drip-interval
  oversize     a frame announcing --oversize bytes (line: a line that long)
  garbage      random bytes (frame: an invalid length first)
  half-open    clients send half a message and go silent, sockets left open
  churn        --total connections connect, send, read their echo and close
  one-address  --one-address connections from one address, held, not reading
  sigterm      SIGTERM to --server-pid while the good clients chat
               (only with --allow-signal; all skips it otherwise)

The exit status is 1 when a case fails its criterion: a good client
disconnected or a message lost, duplicated, reordered or corrupted; for
flooder and zero-flood, throughput during the abuse below half the
baseline's (stalled: below 0.9); an abuser the server did not close
(stalled, drip, oversize, garbage); more orphan sockets after the stalled
clients' eviction than before; for sigterm, a message the server accepted
that did not reach every good client, or a server that did not exit.
docs/RELIABILITY.md describes the cases and their results.`

func runLoadAbuse(fs *flag.FlagSet, args []string) error {
	var cfg load.AbuseConfig
	var cases string
	var asJSON, quiet bool
	fs.StringVar(&cfg.Addr, "addr", load.DefaultAddr, "server `address`, host:port")
	var framing string
	choiceVar(fs, &framing, "framing", "auto", []string{"auto", "frame", "line"}, "the server's `framing`: frame, line, or auto: found out by a probe first (a raw server cannot be judged)")
	fs.StringVar(&cases, "case", "all", "the `cases` to run, comma-separated, or all")
	fs.BoolVar(&cfg.Short, "short", false, "short defaults: phases under a second, hundreds of connections; throughput reported, not judged (a quick check of behaviour)")
	intVar(fs, &cfg.Good, "good", 0, 0, noMax, "good clients, each a sender: a `number` (0: 20)")
	sizeVar(fs, &cfg.Size, "size", 0, 0, load.MaxSize, false, "`size` of the good clients' messages (frame: the payload, 41B to 1MiB; line: with its \\n, 42B to 1MiB; 0: 64B)")
	intVar(fs, &cfg.Window, "window", 0, 0, noMax, "messages a good client keeps in flight: a `number` (0: 8)")
	durationVar(fs, &cfg.Baseline, "baseline", 0, false, "length of the baseline phase: a `duration` (0: 5s; --short: 300ms)")
	durationVar(fs, &cfg.Abuse, "abuse", 0, false, "length of the abuse phase: a `duration` (0: 10s; --short: 700ms)")
	durationVar(fs, &cfg.Recovery, "recovery", 0, false, "length of the recovery phase: a `duration` (0: 5s; --short: 300ms)")
	durationVar(fs, &cfg.Wait, "wait", 0, false, "how much longer the abuse phase may last while a case waits for the server to close its abusers, for its connections, or for the server to exit: a `duration` (0: 60s; --short: 10s)")
	durationVar(fs, &cfg.Settle, "settle", 0, false, "before each case, how long to wait for the server to let go of the previous case's connections: a `duration` (0: 30s; --short: 5s)")
	intVar(fs, &cfg.Stalled, "stalled", 0, 0, noMax, "stalled clients: a `number` (0: a tenth of --good, at least 2)")
	intVar(fs, &cfg.HalfOpen, "half-open", 0, 0, noMax, "half-open clients: a `number` (0: 10; --short: 4)")
	intVar(fs, &cfg.ChurnTotal, "total", 0, 0, noMax, "churn: connections to open and close, a `number` (0: 20000; --short: 1000)")
	intVar(fs, &cfg.ChurnConcurrent, "concurrent", 0, 0, noMax, "churn: connections open at once at most, a `number` (0: 500; --short: 100)")
	intVar(fs, &cfg.OneAddress, "one-address", 0, 0, noMax, "one-address: connections from one source address, a `number` (0: 15000; --short: 1000)")
	sizeVar(fs, &cfg.Oversize, "oversize", 0, 0, noMax, false, "oversize: the `size` the frame announces or the line runs to; also bounds garbage (0: 1GiB)")
	durationVar(fs, &cfg.DripInterval, "drip-interval", 0, false, "drip: time between its bytes, a `duration` (0: 1s)")
	sizeVar(fs, &cfg.DripSize, "drip-size", 0, 0, load.MaxSize, false, "drip: `size` of the message it starts, more than the smallest message (0: 4KiB)")
	fs.BoolVar(&cfg.FloodNoRead, "flood-no-read", false, "flooder: read nothing")
	fs.BoolVar(&cfg.AllowSignal, "allow-signal", false, "sigterm: allow the tool to send SIGTERM to --server-pid")
	intVar(fs, &cfg.ServerPID, "server-pid", 0, 0, noMax, "the server's process `id`: report its descriptors, threads and memory by phase (sigterm needs it; 0: none)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "show no progress on standard error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := load.CheckAddrs([]string{cfg.Addr}); err != nil {
		return usageErr(fs, "--addr: %v", err)
	}
	cfg.Cases = splitList(cases)
	known := append(load.AbuseCases(), "all")
	for _, c := range cfg.Cases {
		if !slices.Contains(known, c) {
			return usageErr(fs, "--case: must be all or some of %s, comma-separated, got %q in %s", strings.Join(load.AbuseCases(), ", "), c, cases)
		}
	}
	if slices.Contains(cfg.Cases, "sigterm") && (!cfg.AllowSignal || cfg.ServerPID == 0) {
		return usageErr(fs, "--case: sigterm signals the server: give --allow-signal and --server-pid")
	}
	// The sizes are checked before the probe against frame's least, the
	// smaller, and after it against the framing chosen.
	checkSizes := func(f chat.Framing) error {
		if least := load.MinSize(f); cfg.Size != 0 && cfg.Size < least {
			return usageErr(fs, "--size: must be 0 or between %s and %s with %s framing, got %s",
				formatSize(int64(least)), formatSize(load.MaxSize), f, formatSize(int64(cfg.Size)))
		}
		if least := load.MinSize(f) + 1; cfg.DripSize != 0 && cfg.DripSize < least {
			return usageErr(fs, "--drip-size: must be 0 or between %s and %s with %s framing, got %s",
				formatSize(int64(least)), formatSize(load.MaxSize), f, formatSize(int64(cfg.DripSize)))
		}
		return nil
	}
	if err := checkSizes(chat.Frame); err != nil {
		return err
	}
	fc, err := chooseFraming(context.Background(), dialTCP, fs.Name(), framing, []string{cfg.Addr}, nil)
	if err != nil {
		return err
	}
	if fc.known && fc.server == chat.Raw {
		return fmt.Errorf("the server relays raw reads (cport serve's default framing), where abuse has no message to judge: start it with --framing frame or line")
	}
	cfg.Framing = fc.used
	if err := checkSizes(cfg.Framing); err != nil {
		return err
	}

	rep, err := report(quiet, asJSON, func(ctx context.Context, progress func(load.Progress), every time.Duration) (*load.AbuseReport, error) {
		cfg.Progress, cfg.ProgressInterval = progress, every
		return load.Abuse(ctx, cfg)
	}, writeAbuseReport)
	if err != nil {
		return err
	}
	if rep.Failed() {
		var failed []string
		for _, c := range rep.Cases {
			if c.Failed() {
				failed = append(failed, c.Case)
			}
		}
		return fmt.Errorf("%w: %s", errChecks, strings.Join(failed, ", "))
	}
	return nil
}

func writeAbuseReport(w io.Writer, r *load.AbuseReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target       %s, %s framing; %d good clients, %d-byte messages, window %d", r.Addr, r.Framing, r.Good, r.Size, r.Window)
	if r.ServerPID > 0 {
		fmt.Fprintf(&b, "; server pid %d", r.ServerPID)
	}
	b.WriteString("\n")
	for i := range r.Cases {
		writeAbuseCase(&b, &r.Cases[i])
	}
	if r.Interrupted {
		b.WriteString("\ninterrupted: the cases after the last one above did not run\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeAbuseCase(b *strings.Builder, c *load.AbuseCaseReport) {
	fmt.Fprintf(b, "\ncase %-11s %s\n", c.Case, c.What)
	if c.Skipped != "" {
		fmt.Fprintf(b, "  skipped    %s\n", c.Skipped)
		return
	}
	if c.Settle >= time.Second {
		fmt.Fprintf(b, "  settled    %s before the case\n", fmtDuration(c.Settle))
	}
	if len(c.Phases) > 0 {
		fmt.Fprintf(b, "  %-9s %8s %9s %8s %7s %6s %5s │ %6s %7s %10s │ %6s %6s %6s %10s\n",
			"phase", "length", "deliv/s", "sent", "lost", "errors", "kills", "fds", "threads", "RSS", "inuse", "orphan", "tw", "tcp mem")
	}
	for _, p := range c.Phases {
		fmt.Fprintf(b, "  %-9s %8s %9s %8d %7d %6d %5d │ %s │ %s\n", p.Name, fmtDuration(p.Duration), fmtRate(p.DeliveriesPerSec),
			p.Sent, p.Lost, p.Errors, p.Disconnected, fmtServer(p.Server), fmtTCP(p.TCP))
		if p.ServerPeak != nil || p.TCPPeak != nil {
			fmt.Fprintf(b, "  %-9s %8s %9s %8s %7s %6s %5s │ %s │ %s\n", "  peak", "", "", "", "", "", "", fmtServer(p.ServerPeak), fmtTCP(p.TCPPeak))
		}
	}
	if c.ServerErr != "" {
		fmt.Fprintf(b, "  server     usage not read: %s\n", c.ServerErr)
	}
	writeAbuser(b, c)
	g := c.Good
	fmt.Fprintf(b, "  good       lost %d  duplicated %d  reordered %d  corrupted %d  disconnected %d", g.Lost, g.Duplicated, g.Reordered, g.Corrupted, g.Disconnected)
	if c.Foreign > 0 {
		fmt.Fprintf(b, "; %d abusers' messages relayed to them", c.Foreign)
	}
	b.WriteString("\n")
	if c.Disconnect != "" {
		fmt.Fprintf(b, "             first disconnect: %s\n", c.Disconnect)
	}
	if c.Ratio > 0 || c.Phase(load.PhaseAbuse) != nil {
		fmt.Fprintf(b, "  throughput during the abuse %.2f of the baseline's\n", c.Ratio)
	}
	fmt.Fprintf(b, "  criterion  %s\n", c.Criterion)
	switch {
	case c.Err != "":
		fmt.Fprintf(b, "  result     FAILED: the case could not run: %s\n", c.Err)
	case c.Failed():
		fmt.Fprintf(b, "  result     FAILED: %s\n", strings.Join(c.Failures, "; "))
	case c.Interrupted:
		b.WriteString("  result     OK so far (interrupted)\n")
	default:
		b.WriteString("  result     OK\n")
	}
}

// writeAbuser describes what became of a case's abusers.
func writeAbuser(b *strings.Builder, c *load.AbuseCaseReport) {
	a := c.Abuser
	if s := a.Signal; s != nil {
		exit := "did not exit"
		if s.Exited {
			exit = "exited " + fmtDuration(s.Exit) + " after SIGTERM"
		}
		fmt.Fprintf(b, "  server     %s; it had accepted %d messages (some client received them)\n", exit, s.Accepted)
		if s.Err != "" {
			fmt.Fprintf(b, "             %s\n", s.Err)
		}
		return
	}
	if ch := c.Churn; ch != nil {
		fmt.Fprintf(b, "  churn      %d connections in %s (%s/s): %d done, %d failed; %d messages of others read meanwhile\n",
			ch.Done+ch.Failures, fmtDuration(ch.Duration), fmtRate(ch.PerSec), ch.Done, ch.Failures, ch.Others)
		if ch.FirstFailure != "" {
			fmt.Fprintf(b, "             first failure: %s\n", ch.FirstFailure)
		}
		if a.FirstDialError != "" {
			fmt.Fprintf(b, "             stopped: %s\n", a.FirstDialError)
		}
		return
	}
	fmt.Fprintf(b, "  abusers    %d connection%s", a.Conns, plural(a.Conns, "s"))
	if a.DialFailed > 0 {
		fmt.Fprintf(b, " (%d more failed to connect: %s)", a.DialFailed, a.FirstDialError)
	}
	if a.Unknown {
		b.WriteString("; whether the server closed them cannot be seen here (TCP_INFO: Linux)")
	} else {
		fmt.Fprintf(b, "; %d closed by the server", a.Closed)
		if a.Closed > 0 {
			fmt.Fprintf(b, " (%d reset, %d before receiving anything), the first %s after connecting (%s), the last after %s",
				a.Reset, a.Silent, fmtDuration(a.FirstClose), a.How, fmtDuration(a.LastClose))
		}
		if a.Open > 0 {
			fmt.Fprintf(b, "; %d still open at the end, reset by the tool", a.Open)
		}
	}
	b.WriteString("\n")
	if a.Written > 0 || a.Received > 0 {
		fmt.Fprintf(b, "             wrote %s (%s/s", fmtBytes(float64(a.Written)), fmtBytes(a.WrittenPerSec))
		if a.Messages > 0 {
			fmt.Fprintf(b, ", %d messages", a.Messages)
		}
		fmt.Fprintf(b, "), received %s\n", fmtBytes(float64(a.Received)))
	}
	if a.OrphansBefore != nil && a.OrphansAfter != nil {
		fmt.Fprintf(b, "  orphans    %d when the stalled clients joined, %d at the end of the recovery\n", *a.OrphansBefore, *a.OrphansAfter)
	}
}

// fmtServer formats the server's usage columns.
func fmtServer(u *load.ProcUsage) string {
	if u == nil {
		return fmt.Sprintf("%6s %7s %10s", "-", "-", "-")
	}
	fds := "?"
	if u.FDs >= 0 {
		fds = strconv.Itoa(u.FDs)
	}
	return fmt.Sprintf("%6s %7d %10s", fds, u.Threads, fmtBytes(float64(u.RSS)))
}

// fmtTCP formats the kernel's TCP columns.
func fmtTCP(s *load.Sockstat) string {
	if s == nil {
		return fmt.Sprintf("%6s %6s %6s %10s", "-", "-", "-", "-")
	}
	return fmt.Sprintf("%6d %6d %6d %10s", s.InUse, s.Orphan, s.TimeWait, fmtBytes(float64(s.Mem)))
}
