package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A serverSpec is one server under test.
type serverSpec struct {
	name string // "cport/uring", "net", "gnet", "nbio"
	// relay and echo return the command lines of the relay server and of
	// its echo counterpart, listening on addr.
	relay func(addr string) []string
	echo  func(addr string) []string
	// ws tells that relay's addr is a WebSocket address: cport load
	// drives it with --ws.
	ws bool
}

// baseline is the server the ratios are taken against.
const baseline = "net"

// allServers returns the servers of this build, cport's engines first: the
// backends `cport help serve` names (uring, epoll, portable by default).
func (r *runner) allServers(ctx context.Context) []serverSpec {
	workers := []string{}
	if r.cfg.Workers > 0 {
		workers = []string{"--workers", strconv.Itoa(r.cfg.Workers)}
	}
	var specs []serverSpec
	for _, be := range cportBackends(ctx, r.bins.cport) {
		specs = append(specs, serverSpec{
			name: "cport/" + be,
			relay: func(addr string) []string {
				return append([]string{r.bins.cport, "serve", "--backend", be, "--framing", "frame", "--addr", addr, "--log-level", "warn"}, workers...)
			},
			echo: func(addr string) []string {
				return append([]string{r.bins.cportecho, "--backend", be, "--model", r.cfg.EchoModel, "--addr", addr}, workers...)
			},
		})
	}
	for _, p := range []struct{ name, bin string }{{"net", r.bins.netpeer}, {"gnet", r.bins.gnetpeer}, {"nbio", r.bins.nbiopeer}} {
		specs = append(specs, serverSpec{
			name: p.name,
			relay: func(addr string) []string {
				return append([]string{p.bin, "--framing", "frame", "--addr", addr}, workers...)
			},
			echo: func(addr string) []string {
				return append([]string{p.bin, "--mode", "echo", "--addr", addr}, workers...)
			},
		})
	}
	return specs
}

// cportBackends returns the backends that cport serve's help names, in the
// order uring, epoll, portable, then any other.
func cportBackends(ctx context.Context, cport string) []string {
	first := []string{"uring", "epoll", "portable"}
	out, _ := exec.CommandContext(ctx, cport, "help", "serve").CombinedOutput()
	m := regexp.MustCompile(`auto or one of ([a-z, ]+)`).FindSubmatch(out)
	if m == nil {
		return first
	}
	var names []string
	for n := range strings.SplitSeq(string(m[1]), ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	rank := func(n string) int {
		if i := slices.Index(first, n); i >= 0 {
			return i
		}
		return len(first)
	}
	slices.SortStableFunc(names, func(a, b string) int { return rank(a) - rank(b) })
	return names
}

// probeServers starts each server once, keeping those that start and
// accept a connection, and noting why the others were left out.
func (r *runner) probeServers(ctx context.Context) []serverSpec {
	var ok []serverSpec
	for _, s := range r.allServers(ctx) {
		if len(r.cfg.Servers) > 0 && !contains(r.cfg.Servers, s.name) {
			continue
		}
		p, err := startServer(ctx, s.relay)
		if err != nil {
			r.note("%s skipped: it does not start here: %v", s.name, err)
			continue
		}
		p.stop()
		ok = append(ok, s)
	}
	names := make([]string, len(ok))
	for i, s := range ok {
		names[i] = s.name
	}
	progress("servers: %s", strings.Join(names, ", "))
	return ok
}

// A process is a running server.
type process struct {
	addr   string
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}
	stderr *tailBuffer
}

// startServer starts the server that argv builds on a free loopback port
// and returns once it accepts connections (10s at most).
func startServer(ctx context.Context, argv func(addr string) []string) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := argv(addr)
	cmd := exec.Command(args[0], args[1:]...)
	p := &process{addr: addr, cmd: cmd, exited: make(chan struct{}), stderr: &tailBuffer{max: 4096}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pid = cmd.Process.Pid
	go func() { cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			// Reset, not closed: a chat server keeps a client that ended
			// its stream for a while (--half-close-timeout), and the idle
			// scenarios' descriptor baseline would count it.
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("exited: %s", p.stderr.String())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("not accepting connections on %s after 10s: %v", addr, err)
		}
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 5 seconds.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive reports whether the server still runs.
func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// freeAddr returns 127.0.0.1 with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// A tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// A procSample is what /proc says about a process at one moment.
type procSample struct {
	cpu time.Duration // user + system since it started
	rss int64         // bytes
	fds int           // open descriptors
}

// sampleProc reads /proc/PID/stat, /proc/PID/status and /proc/PID/fd.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return s, err
	}
	// Fields after the command name, which may hold spaces: utime and
	// stime are the 12th and 13th (proc_pid_stat(5)), in clock ticks of
	// 1/100 s on Linux.
	f := bytes.Fields(stat[bytes.LastIndexByte(stat, ')')+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("%sstat: unexpected format", dir)
	}
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	s.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	status, err := os.ReadFile(dir + "status")
	if err != nil {
		return s, err
	}
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			s.rss = kb << 10
		}
	}
	d, err := os.Open(dir + "fd")
	if err != nil {
		return s, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	s.fds = len(names)
	return s, err
}
