package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// loadStdout receives load's reports; tests replace it.
var loadStdout io.Writer = os.Stdout

// errChecks makes cport load exit with status 1 after printing its report.
var errChecks = errors.New("checks failed")

// maxLoadTime bounds a load run's warm-up and measured window together, as
// load.Run does.
const maxLoadTime = 24 * time.Hour

func runLoad(fs *flag.FlagSet, args []string) error {
	var f loadFlags
	f.register(fs, load.DefaultClients, "connections to open", "length of the measured window")
	cfg := &f.cfg
	intVar(fs, &cfg.Senders, "senders", load.DefaultSenders, 1, noMax, "how many of the clients send: a `number` from 1 to --clients")
	sizeVar(fs, &cfg.Size, "size", load.DefaultSize, int64(load.MinSize(chat.Frame)), load.MaxSize, false, "message `size` (frame: the payload, 41B to 1MiB; line: with its \\n, 42B to 1MiB)")
	intVar(fs, &cfg.Window, "window", load.DefaultWindow, 1, noMax, "closed loop: messages a sender keeps in flight, awaiting their echo: a `number`, 1 or more")
	floatVar(fs, &cfg.Rate, "rate", 0, false, "open loop: messages per second per sender, on a fixed schedule: a `rate` (0: closed loop)")
	durationVar(fs, &cfg.Warmup, "warmup", 2*time.Second, false, "senders run this `duration` before the measured window (0: none)")
	durationVar(fs, &cfg.DrainTimeout, "drain-timeout", load.DefaultDrainTimeout, true, "after the senders stop, how long to wait for every message to arrive: a `duration` above 0")
	var cpuProfile string
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the load process over the whole run to `file` (go tool pprof reads it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := f.finish(fs); err != nil {
		return err
	}
	servers := len(cfg.Addrs)
	switch {
	case cfg.Senders > cfg.Clients:
		return usageErr(fs, "--senders: must be %d (--clients) or fewer, got %d", cfg.Clients, cfg.Senders)
	case cfg.Senders < servers:
		return usageErr(fs, "--senders: must be %d or more, one for each --addr server, got %d", servers, cfg.Senders)
	case cfg.Warmup+cfg.Duration > maxLoadTime:
		return usageErr(fs, "--warmup and --duration: must add up to %v or less, got %v", maxLoadTime, cfg.Warmup+cfg.Duration)
	}
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	fc, err := f.chooseFraming(fs)
	if err != nil {
		stopProfile()
		return err
	}
	cfg.Framing = fc.used
	if cfg.Size < load.MinSize(cfg.Framing) {
		stopProfile()
		return usageErr(fs, "--size: must be between %s and %s with %s framing, got %s",
			formatSize(int64(load.MinSize(cfg.Framing))), formatSize(load.MaxSize), cfg.Framing, formatSize(int64(cfg.Size)))
	}
	rep, err := report(f.quiet, f.asJSON, func(ctx context.Context, progress func(load.Progress), every time.Duration) (*load.Report, error) {
		cfg.Progress, cfg.ProgressInterval = progress, every
		rep, err := load.Run(ctx, *cfg)
		if perr := stopProfile(); err == nil && perr != nil {
			return nil, perr
		}
		return rep, err
	}, writeReport)
	if err == nil && rep.Failed() {
		e := rep.Errors
		err = fmt.Errorf("%w: %d lost, %d duplicated, %d reordered, %d corrupted, %d disconnected",
			errChecks, e.Lost, e.Duplicated, e.Reordered, e.Corrupted, e.Disconnected)
	}
	return fc.withNote(fs.Output(), fs.Name(), err)
}

const loadDoc = `Load opens --clients connections to a chat server, of which --senders send
--size-byte messages, closed loop (--window messages in flight per sender) or
open loop (--rate messages per second per sender). Every client checks every
message it receives; the report gives throughput, latency, errors and, with
--server-pid, the server's CPU time and memory. Senders start once the server
has registered every client (it must echo messages back to their sender).
The exit status is 1 when a message was lost, duplicated, reordered or
corrupted. With --framing auto, the default, load finds out the server's
framing first, on connections of its own.

With several --addr addresses (a,b,…: servers of one cluster), client i
connects to the (i mod n)th, and so do the senders: every message must reach
every client of every server, as in one room. --server-pid then takes one pid
per address, in the same order; the report gives each server's usage and
their sum.

With --ws, the clients are WebSocket clients of the server's gateway: --addr
is then its WebSocket address (cport serve --ws-addr), each client upgrades
with GET /ws, and each message is one WebSocket message of --size bytes,
checked as in frame framing; --framing does not apply. With --tls (or
--tls-ca, --tls-insecure), the clients speak wss: TLS, then the upgrade.`

const loadIdleDoc = `Load idle opens --clients connections, waits until the server has registered
them all, holds them idle for --duration and, with --server-pid, reports the
server's memory per connection, its CPU use while idle and its threads.`

func runLoadIdle(fs *flag.FlagSet, args []string) error {
	var f loadFlags
	f.register(fs, 10000, "connections to hold", "how long to hold them")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := f.finish(fs); err != nil {
		return err
	}
	if len(f.cfg.ServerPIDs) > 1 {
		return usageErr(fs, "--server-pid: must be one process id (cport load idle measures one server), got %s", f.pids)
	}
	fc, err := f.chooseFraming(fs)
	if err != nil {
		return err
	}
	f.cfg.Framing = fc.used
	rep, err := report(f.quiet, f.asJSON, func(ctx context.Context, progress func(load.Progress), every time.Duration) (*load.IdleReport, error) {
		f.cfg.Progress, f.cfg.ProgressInterval = progress, every
		return load.Idle(ctx, f.cfg)
	}, writeIdleReport)
	if err == nil && rep.Failed() {
		err = fmt.Errorf("%w: the server dropped %d connections (%s)", errChecks, rep.Disconnected, rep.Disconnect)
	}
	return fc.withNote(fs.Output(), fs.Name(), err)
}

const loadChurnDoc = `Load churn opens and closes --total connections to a chat server, at most
--concurrent at once. Each sends one message and reads until its echo (the
messages of the other connections go by meanwhile), then closes; with
--connect-only it closes as soon as it is open, sending nothing. With
--server-pid it reports the server's descriptors (Linux), threads and
resident memory before, at their peak and after, waiting up to
--settle-timeout once the last connection closed for the server to come back
to its baseline. The exit status is 1 when a connection failed, or the server
did not come back: more descriptors than before, or more than twice the
resident memory.`

func runLoadChurn(fs *flag.FlagSet, args []string) error {
	var cfg load.ChurnConfig
	var framing string
	pid := 0
	var asJSON, quiet bool
	fs.StringVar(&cfg.Addr, "addr", load.DefaultAddr, "server `address`, host:port")
	choiceVar(fs, &framing, "framing", "auto", []string{"auto", "frame", "line"}, framingAuto)
	intVar(fs, &cfg.Total, "total", load.DefaultChurnTotal, 1, noMax, "connections to open and close: a `number`, 1 or more")
	intVar(fs, &cfg.Concurrent, "concurrent", load.DefaultChurnConcurrent, 1, noMax, "connections open at once at most: a `number`, 1 or more")
	sizeVar(fs, &cfg.Size, "size", 0, 0, load.MaxSize, false, "`size` of the message each connection sends (frame: the payload, 41B to 1MiB; line: with its \\n, 42B to 1MiB; 0: the smallest)")
	fs.BoolVar(&cfg.ConnectOnly, "connect-only", false, "close each connection as soon as it is open, sending nothing")
	durationVar(fs, &cfg.EchoTimeout, "echo-timeout", load.DefaultEchoTimeout, true, "how long a connection waits for its echo: a `duration` above 0")
	intVar(fs, &pid, "server-pid", 0, 0, noMax, "the server's process `id`: report its descriptors, threads and memory before, at peak and after (0: none)")
	durationVar(fs, &cfg.SettleTimeout, "settle-timeout", load.DefaultSettleTimeout, true, "once the last connection closed, how long to wait for the server to come back to its baseline: a `duration` above 0")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "show no progress on standard error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := load.CheckAddrs([]string{cfg.Addr}); err != nil {
		return usageErr(fs, "--addr: %v", err)
	}
	cfg.ServerPID = pid
	var note io.Writer
	if !quiet {
		note = fs.Output()
	}
	// The size is checked before the probe against the smaller of the
	// framings' least, and after it against the framing chosen.
	checkSize := func(f chat.Framing) error {
		if least := load.MinSize(f); cfg.Size != 0 && cfg.Size < least {
			return usageErr(fs, "--size: must be 0 or between %s and %s with %s framing, got %s",
				formatSize(int64(least)), formatSize(load.MaxSize), f, formatSize(int64(cfg.Size)))
		}
		return nil
	}
	if f, err := chat.ParseFraming(framing); err == nil {
		if err := checkSize(f); err != nil {
			return err
		}
	} else if err := checkSize(chat.Frame); err != nil {
		return err
	}
	if cfg.ConnectOnly && framing == "auto" {
		framing = "frame" // nothing is sent: no framing to find out
	}
	fc, err := chooseFraming(context.Background(), dialTCP, fs.Name(), framing, []string{cfg.Addr}, note)
	if err != nil {
		return err
	}
	cfg.Framing = fc.used
	if err := checkSize(cfg.Framing); err != nil {
		return err
	}
	rep, err := report(quiet, asJSON, func(ctx context.Context, progress func(load.Progress), every time.Duration) (*load.ChurnReport, error) {
		cfg.Progress, cfg.ProgressInterval = progress, every
		return load.Churn(ctx, cfg)
	}, writeChurnReport)
	if err == nil && rep.Failed() {
		err = fmt.Errorf("%w: %s", errChecks, churnVerdict(rep))
	}
	return fc.withNote(fs.Output(), fs.Name(), err)
}

// churnVerdict says what went wrong in a failed churn.
func churnVerdict(r *load.ChurnReport) string {
	var why []string
	if r.Failures > 0 {
		why = append(why, fmt.Sprintf("%d of %d connections failed (first: %s)", r.Failures, r.Total, r.FirstFailure))
	}
	if s := r.Server; s != nil && !s.Back() {
		switch {
		case s.Err != "":
			why = append(why, "the server's usage: "+s.Err)
		default:
			if s.After.FDs > s.Before.FDs {
				why = append(why, fmt.Sprintf("the server holds %d descriptors %s after the churn, %d before",
					s.After.FDs, fmtDuration(s.Settle), s.Before.FDs))
			}
			if s.After.RSS > 2*s.Before.RSS {
				why = append(why, fmt.Sprintf("the server's RSS is %s %s after the churn, more than twice the %s before",
					fmtBytes(float64(s.After.RSS)), fmtDuration(s.Settle), fmtBytes(float64(s.Before.RSS))))
			}
		}
	}
	return strings.Join(why, "; ")
}

func writeChurnReport(w io.Writer, r *load.ChurnReport) error {
	var b strings.Builder
	what := fmt.Sprintf("%s framing, one %d-byte message and its echo each", r.Framing, r.Size)
	if r.ConnectOnly {
		what = "connect and close, nothing sent"
	}
	fmt.Fprintf(&b, "target       %s, %s\n", r.Addr, what)
	interrupted := ""
	if r.Interrupted {
		interrupted = " (interrupted)"
	}
	fmt.Fprintf(&b, "churn        %d connections, %d at once, from %d source address%s, in %s%s: %s connections/s\n",
		r.Done+r.Failures, r.Concurrent, r.SourceAddrs, plural(r.SourceAddrs, "es"), fmtDuration(r.Duration), interrupted, fmtRate(r.PerSec))
	fmt.Fprintf(&b, "outcome      %d done, %d failed", r.Done, r.Failures)
	if !r.ConnectOnly {
		fmt.Fprintf(&b, "; %d messages of other connections read meanwhile", r.Others)
	}
	b.WriteString("\n")
	if r.FirstFailure != "" {
		fmt.Fprintf(&b, "             first failure: %s\n", r.FirstFailure)
	}
	if s := r.Server; s != nil {
		if s.Err != "" {
			fmt.Fprintf(&b, "server       pid %d: %s\n", s.PID, s.Err)
		} else {
			fds := func(n int) string {
				if n < 0 {
					return "?"
				}
				return strconv.Itoa(n)
			}
			fmt.Fprintf(&b, "server       pid %d      %10s %10s %10s  (after: %s after the last close)\n", s.PID, "before", "peak", "after", fmtDuration(s.Settle))
			fmt.Fprintf(&b, "  descriptors %15s %10s %10s\n", fds(s.Before.FDs), fds(s.Peak.FDs), fds(s.After.FDs))
			fmt.Fprintf(&b, "  threads     %15d %10d %10d\n", s.Before.Threads, s.Peak.Threads, s.After.Threads)
			fmt.Fprintf(&b, "  RSS         %15s %10s %10s\n", fmtBytes(float64(s.Before.RSS)), fmtBytes(float64(s.Peak.RSS)), fmtBytes(float64(s.After.RSS)))
		}
	}
	result := "OK"
	if r.Failed() {
		result = "FAILED: " + churnVerdict(r)
	}
	fmt.Fprintf(&b, "result       %s\n", result)
	_, err := io.WriteString(w, b.String())
	return err
}

// loadFlags are the flags that cport load and cport load idle share, and
// the configuration they fill.
type loadFlags struct {
	cfg     load.Config
	framing string // --framing: auto, frame or line
	addrs   string // --addr, comma-separated
	pids    string // --server-pid, comma-separated
	asJSON  bool
	quiet   bool
	tls     tlsClientFlags
	ws      bool // --ws
}

// register defines the shared flags on fs: clients is the default of
// --clients; clientsHelp and durationHelp are the help of --clients and
// --duration.
func (f *loadFlags) register(fs *flag.FlagSet, clients int, clientsHelp, durationHelp string) {
	fs.StringVar(&f.addrs, "addr", load.DefaultAddr, "server `addresses`: one host:port, or a comma-separated list of servers of one cluster, which the clients are spread over")
	choiceVar(fs, &f.framing, "framing", "auto", []string{"auto", "frame", "line"}, framingAuto)
	intVar(fs, &f.cfg.Clients, "clients", clients, 1, noMax, clientsHelp+": a `number`, 1 or more")
	durationVar(fs, &f.cfg.Duration, "duration", load.DefaultDuration, true, durationHelp+": a `duration` above 0")
	floatVar(fs, &f.cfg.ConnectRate, "connect-rate", load.DefaultConnectRate, false, "connections opened per second: a `rate` (0: no limit)")
	durationVar(fs, &f.cfg.RegisterTimeout, "register-timeout", load.DefaultRegisterTimeout, true, "how long to wait for the server to register every client: a `duration` above 0")
	fs.StringVar(&f.pids, "server-pid", "", "the server's process `id`: report its CPU time, memory and threads")
	fs.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&f.quiet, "quiet", false, "show no progress on standard error")
	fs.BoolVar(&f.ws, "ws", false, "connect WebSocket clients (GET /ws) to the server's WebSocket address, given as --addr (cport serve --ws-addr), instead of TCP clients")
	f.tls.register(fs)
}

// finish checks the shared flags once parsed and completes cfg with them;
// on a bad value it tells fs's output why and returns errUsage (usageErr).
func (f *loadFlags) finish(fs *flag.FlagSet) error {
	cfg := &f.cfg
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = -1
	}
	cfg.Addrs = splitList(f.addrs)
	if err := load.CheckAddrs(cfg.Addrs); err != nil {
		return usageErr(fs, "--addr: %v", err)
	}
	tc, err := f.tls.config(fs)
	if err != nil {
		return err
	}
	cfg.TLS = tc
	if f.ws {
		if flagSet(fs, "framing") {
			return usageErr(fs, "--framing: does not apply with --ws: every WebSocket message is one chat message, whatever the server's framing")
		}
		cfg.WebSocket = true
	}
	if n := len(cfg.Addrs); cfg.Clients < n {
		return usageErr(fs, "--clients: must be %d or more, one for each --addr server, got %d", n, cfg.Clients)
	}
	cfg.ServerPIDs = nil
	if f.pids != "" && f.pids != "0" { // 0: none, as before lists
		for _, p := range splitList(f.pids) {
			pid, err := strconv.Atoi(p)
			if err != nil || pid <= 0 {
				return usageErr(fs, "--server-pid: must be process ids, comma-separated, got %q in %s", p, f.pids)
			}
			cfg.ServerPIDs = append(cfg.ServerPIDs, pid)
		}
		if n := len(cfg.ServerPIDs); n != len(cfg.Addrs) {
			return usageErr(fs, "--server-pid: must be one pid per --addr address (%d), in the same order, got %d: %s", len(cfg.Addrs), n, f.pids)
		}
	}
	return nil
}

// chooseFraming returns the framing that the clients speak: for
// WebSocket clients none (their messages are frame framing's payloads,
// and no probe of the TCP framing runs), else as the package-level
// chooseFraming says.
func (f *loadFlags) chooseFraming(fs *flag.FlagSet) (*framingChoice, error) {
	if f.ws {
		return &framingChoice{addrs: f.cfg.Addrs, used: chat.Frame, server: chat.Frame, known: true}, nil
	}
	return chooseFraming(context.Background(), dialTLS(f.cfg.TLS), fs.Name(), f.framing, f.cfg.Addrs, f.noteTo(fs))
}

// flagSet reports whether the flag name was given on fs's command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// noteTo returns where to say what the framing probe found: fs's output,
// or nowhere with --quiet.
func (f *loadFlags) noteTo(fs *flag.FlagSet) io.Writer {
	if f.quiet {
		return nil
	}
	return fs.Output()
}

// splitList splits a comma-separated list, trimming spaces around items.
func splitList(s string) []string {
	items := strings.Split(s, ",")
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
	}
	return items
}

// interruptible returns a context that the first SIGINT or SIGTERM ends (the
// run stops early and reports); a second signal exits at once.
func interruptible() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-signals:
			cancel()
		case <-done:
			return
		}
		select {
		case <-signals:
			fmt.Fprintln(os.Stderr, "cport load: second signal: exiting now")
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(done)
		cancel()
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeReport(w io.Writer, r *load.Report) error {
	var b strings.Builder
	mode := fmt.Sprintf("closed loop, window %d", r.Window)
	if r.Rate > 0 {
		mode = fmt.Sprintf("open loop, %g msg/s per sender", r.Rate)
	}
	framing := r.Framing + " framing"
	if r.Framing == "websocket" {
		framing = "WebSocket clients"
	}
	fmt.Fprintf(&b, "target       %s, %s, %d-byte messages, %s\n", fmtTarget(r.Addrs), framing, r.Size, mode)
	fmt.Fprintf(&b, "connections  %d (%d senders) from %d source address%s, connected in %s, registered in %s (%d probe%s)\n",
		r.Clients, r.Senders, r.Setup.SourceAddrs, plural(r.Setup.SourceAddrs, "es"),
		fmtDuration(r.Setup.Connect), fmtDuration(r.Setup.Register), r.Setup.Probes, plural(r.Setup.Probes, "s"))
	interrupted := ""
	if r.Interrupted {
		interrupted = " (interrupted)"
	}
	drained := "drained in " + fmtDuration(r.Drain)
	if r.DrainTimedOut {
		drained = "drain timed out after " + fmtDuration(r.Drain)
	}
	fmt.Fprintf(&b, "window       %s after %s of warm-up%s; %s\n", fmtDuration(r.Duration), fmtDuration(r.Warmup), interrupted, drained)
	fmt.Fprintf(&b, "messages     %s accepted/s  (%d in the window; %d sent in all)\n", fmtRate(r.AcceptedPerSec), r.Accepted, r.Sent)
	fmt.Fprintf(&b, "deliveries   %s /s          (%d in the window; %d in all, %d expected)\n",
		fmtRate(r.DeliveriesPerSec), r.Deliveries, r.Delivered, r.Sent*int64(r.Clients))
	l := r.Latency
	fmt.Fprintf(&b, "latency      p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, %d samples)\n",
		fmtDuration(l.P50), fmtDuration(l.P90), fmtDuration(l.P99), fmtDuration(l.P999), fmtDuration(l.Max), fmtDuration(l.Mean), l.Count)
	e := r.Errors
	fmt.Fprintf(&b, "errors       lost %d  duplicated %d  reordered %d  corrupted %d  disconnected %d\n",
		e.Lost, e.Duplicated, e.Reordered, e.Corrupted, e.Disconnected)
	if r.Disconnect != "" {
		fmt.Fprintf(&b, "             first disconnect: %s\n", r.Disconnect)
	}
	if s := r.Server; s != nil {
		if len(r.PerServer) == 0 {
			writeUsage(&b, "server       ", fmt.Sprintf("pid %d", s.PID), s)
		} else {
			writeUsage(&b, "servers      ", fmt.Sprintf("sum of %d", len(r.PerServer)), s)
			for i := range r.PerServer {
				u := &r.PerServer[i]
				writeUsage(&b, "             ", fmt.Sprintf("pid %d (%s)", u.PID, r.Addrs[i]), u)
			}
		}
	}
	if d := r.Driver; d != nil {
		writeDriver(&b, d)
	}
	result := "OK"
	if r.Failed() {
		result = "FAILED"
	}
	fmt.Fprintf(&b, "result       %s\n", result)
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtTarget describes the servers a run drove.
func fmtTarget(addrs []string) string {
	if len(addrs) == 1 {
		return addrs[0]
	}
	return fmt.Sprintf("%d servers (%s)", len(addrs), strings.Join(addrs, ", "))
}

// writeUsage writes a line of the report about server usage u: its
// prefix, then what is measured.
func writeUsage(b *strings.Builder, prefix, what string, u *load.ServerUsage) {
	if u.Err != "" {
		fmt.Fprintf(b, "%s%s: %s\n", prefix, what, u.Err)
		return
	}
	fmt.Fprintf(b, "%s%s: cpu %.2fs user + %.2fs system (%.0f%% of a core), %.0f ns per delivery; RSS %s, %d threads\n",
		prefix, what, u.User.Seconds(), u.System.Seconds(), u.CPUPercent, u.CPUPerDelivery, fmtBytes(float64(u.RSS)), u.Threads)
}

// writeDriver writes the report's line about the load process's own usage.
func writeDriver(b *strings.Builder, d *load.DriverUsage) {
	reads := fmt.Sprintf("%.1f deliveries per read (%d reads)", d.DeliveriesPerRead, d.Reads)
	if d.Err != "" {
		fmt.Fprintf(b, "driver       %s; CPU unknown: %s\n", reads, d.Err)
		return
	}
	fmt.Fprintf(b, "driver       CPU %.0f ns/delivery (user+sys: %.2fs user + %.2fs system, %.0f%% of a core), %s\n",
		d.CPUPerDelivery, d.User.Seconds(), d.System.Seconds(), d.CPUPercent, reads)
}

func writeIdleReport(w io.Writer, r *load.IdleReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target       %s\n", fmtTarget(r.Addrs))
	fmt.Fprintf(&b, "connections  %d from %d source address%s, connected in %s, registered in %s (%d probe%s)\n",
		r.Clients, r.Setup.SourceAddrs, plural(r.Setup.SourceAddrs, "es"),
		fmtDuration(r.Setup.Connect), fmtDuration(r.Setup.Register), r.Setup.Probes, plural(r.Setup.Probes, "s"))
	interrupted := ""
	if r.Interrupted {
		interrupted = " (interrupted)"
	}
	fmt.Fprintf(&b, "held idle    %s%s; %d dropped by the server\n", fmtDuration(r.Duration), interrupted, r.Disconnected)
	if r.Disconnect != "" {
		fmt.Fprintf(&b, "             first: %s\n", r.Disconnect)
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(&b, "server       pid %d: RSS %s before, %s held: %s per connection\n",
			s.PID, fmtBytes(float64(s.RSSBefore)), fmtBytes(float64(s.RSSHeld)), fmtBytes(s.RSSPerConn))
		fmt.Fprintf(&b, "             idle cpu %.3fs user + %.3fs system: %.2f%% of a core; threads %d before, %d after\n",
			s.User.Seconds(), s.System.Seconds(), s.CPUPercent, s.ThreadsBefore, s.ThreadsAfter)
		if s.Err != "" {
			fmt.Fprintf(&b, "             %s\n", s.Err)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}

// fmtDuration prints d with three significant digits.
func fmtDuration(d time.Duration) string {
	for unit := time.Duration(1); unit < time.Hour; unit *= 10 {
		if d < 1000*unit {
			return d.Round(unit).String()
		}
	}
	return d.Round(time.Second).String()
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

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

// A progressView shows a run's progress on standard error: a progress bar
// on a terminal, a plain line per second otherwise, nothing when quiet.
type progressView struct {
	w        io.Writer
	quiet    bool
	tty      bool
	interval time.Duration
	bar      *progressbar.ProgressBar
	phase    load.Phase
}

// report runs a load command's measurement with progress on standard
// error (start gets the progress callback and its interval), then writes
// its report as JSON or as text.
func report[R any](quiet, asJSON bool, start func(ctx context.Context, progress func(load.Progress), every time.Duration) (R, error), text func(io.Writer, R) error) (R, error) {
	ctx, stop := interruptible()
	defer stop()
	pv := newProgressView(os.Stderr, quiet)
	rep, err := start(ctx, pv.update, pv.interval)
	pv.finish()
	if err != nil {
		return rep, err
	}
	if asJSON {
		return rep, writeJSON(loadStdout, rep)
	}
	return rep, text(loadStdout, rep)
}

func newProgressView(f *os.File, quiet bool) *progressView {
	v := &progressView{w: f, quiet: quiet, tty: term.IsTerminal(int(f.Fd())), interval: time.Second}
	if v.tty {
		v.interval = 200 * time.Millisecond
	}
	return v
}

// update is the run's progress callback.
func (v *progressView) update(p load.Progress) {
	if v.quiet {
		return
	}
	if !v.tty {
		switch p.Phase {
		case load.PhaseConnect, load.PhaseRegister, load.PhaseIdle, load.PhaseChurn, load.PhaseSettle:
			fmt.Fprintf(v.w, "cport load: %-8s %d/%d\n", p.Phase, p.Done, p.Total)
		default:
			fmt.Fprintf(v.w, "cport load: %-8s %d/%d  sent %d  delivered %d  errors %d\n",
				p.Phase, p.Done, p.Total, p.Sent, p.Delivered, p.Errors)
		}
		return
	}
	if p.Phase != v.phase {
		if v.bar != nil {
			v.bar.Finish()
		}
		v.phase = p.Phase
		v.bar = progressbar.NewOptions64(max(p.Total, 1),
			progressbar.OptionSetWriter(v.w),
			progressbar.OptionSetDescription(fmt.Sprintf("%-8s", p.Phase)),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(false),
		)
	}
	if p.Total > 0 && v.bar.GetMax64() != p.Total {
		v.bar.ChangeMax64(p.Total)
	}
	v.bar.Describe(fmt.Sprintf("%-8s errors %d", p.Phase, p.Errors))
	v.bar.Set64(p.Done)
}

// finish clears the bar; the run calls update no more.
func (v *progressView) finish() {
	if v.bar != nil {
		v.bar.Finish()
		v.bar = nil
	}
}
