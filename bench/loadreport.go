package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"cport.dev/cport/load"
)

// The JSON reports of `cport load --json` and `cport load idle --json` are
// decoded into the load package's own report types: the runner builds
// cport from the same tree, so a field renamed there is a compile error
// here rather than a silent zero. This file is the one place that knows
// their shape.
type (
	runReport  = load.Report
	idleReport = load.IdleReport
)

// loadArgs is one run of cport load.
type loadArgs struct {
	addr      string
	clients   int
	senders   int
	size      int
	window    int     // closed loop
	rate      float64 // open loop, per sender (0: closed loop)
	warmup    time.Duration
	duration  time.Duration
	serverPID int
	ws        bool // WebSocket clients (addr is a WebSocket address)
}

// connectRate is the --connect-rate of every load process: fast, but not
// so fast that a listen backlog overflows and SYNs wait for a resend.
const connectRate = 10000

// args returns the command line of a.
func (a loadArgs) args() []string {
	framing := []string{"--framing", "frame"}
	if a.ws {
		framing = []string{"--ws"}
	}
	args := append([]string{"load", "--addr", a.addr}, framing...)
	args = append(args,
		"--clients", strconv.Itoa(a.clients), "--senders", strconv.Itoa(a.senders),
		"--size", strconv.Itoa(a.size),
		"--warmup", a.warmup.String(), "--duration", a.duration.String(),
		"--connect-rate", strconv.Itoa(connectRate),
		"--drain-timeout", "5s",
		"--json", "--quiet",
	)
	if a.window > 0 {
		args = append(args, "--window", strconv.Itoa(a.window))
	}
	if a.rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(a.rate, 'f', -1, 64))
	}
	if a.serverPID > 0 {
		args = append(args, "--server-pid", strconv.Itoa(a.serverPID))
	}
	return args
}

// runLoad runs cport load and returns its report. A run whose checks
// failed (exit status 1 after the report) still returns its report; the
// caller looks at its errors.
func (r *runner) runLoad(ctx context.Context, a loadArgs) (*runReport, error) {
	timeout := a.warmup + a.duration + time.Duration(a.clients)*time.Second/connectRate + 45*time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bins.cport, a.args()...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) } // it reports what it has
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	err := cmd.Run()
	var rep runReport
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		if err == nil {
			err = jerr
		}
		return nil, fmt.Errorf("cport load: %v: %s", err, stderr.String())
	}
	return &rep, nil
}

// problems describes what went wrong in a run, or "".
func problems(rep *runReport) string {
	e := rep.Errors
	if e.Total() == 0 && !rep.DrainTimedOut {
		return ""
	}
	s := fmt.Sprintf("lost %d, duplicated %d, reordered %d, corrupted %d, disconnected %d", e.Lost, e.Duplicated, e.Reordered, e.Corrupted, e.Disconnected)
	if rep.Disconnect != "" {
		s += " (" + rep.Disconnect + ")"
	}
	return s
}

// An idleProc is a cport load idle process holding connections.
type idleProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *tailBuffer
	done   chan error
}

// startIdle starts cport load idle with clients connections to addr, held
// for hold once registered.
func (r *runner) startIdle(addr string, clients int, hold time.Duration) (*idleProc, error) {
	p := &idleProc{stderr: &tailBuffer{max: 2048}, done: make(chan error, 1)}
	p.cmd = exec.Command(r.bins.cport, "load", "idle", "--addr", addr, "--framing", "frame",
		"--clients", strconv.Itoa(clients), "--duration", hold.String(),
		"--connect-rate", strconv.Itoa(connectRate), "--json", "--quiet")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p, nil
}

// stop interrupts the process (it then reports) and returns its report,
// waiting 10 seconds at most.
func (p *idleProc) stop() (*idleReport, error) {
	p.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		err = <-p.done
	}
	var rep idleReport
	if jerr := json.Unmarshal(p.stdout.Bytes(), &rep); jerr != nil {
		return nil, fmt.Errorf("cport load idle: %v: %s", err, p.stderr.String())
	}
	return &rep, nil
}

// exited reports whether the process ended, and why.
func (p *idleProc) exited() (bool, string) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, fmt.Sprintf("%v: %s", err, p.stderr.String())
	default:
		return false, ""
	}
}
