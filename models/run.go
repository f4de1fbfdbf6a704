package models

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Model is one I/O model and the server that implements it.
type Model struct {
	Name string `json:"name"`
	// Backend is "select" or "poll" for the servers of models/readiness,
	// else the cport engine serving the model.
	Backend string `json:"backend"`
}

// Models are the models measured, in the order of the tutorial's argument.
var Models = []Model{
	{"select", "select"},
	{"poll", "poll"},
	{"epoll", "epoll"},
	{"io_uring", "uring"},
	{"goroutine-per-conn", "portable"},
}

// DefaultNs are the idle-connection counts of a full run; QuickNs of --quick.
var (
	DefaultNs = []int{10, 100, 1000, 10000, 50000}
	QuickNs   = []int{10, 100, 1000}
)

// selectSetSize is FD_SETSIZE: the select model cannot watch a descriptor
// numbered this or more.
const selectSetSize = 1024

// Config configures Run.
type Config struct {
	Exe     string        `json:"-"`      // the cport binary, run as "EXE models serve"
	Models  []Model       `json:"models"` // default Models
	Ns      []int         `json:"ns"`     // idle connections per point; default DefaultNs
	K       int           `json:"k"`      // active clients; default 10
	Rate    float64       `json:"rate"`   // messages per second per active client; default 200
	Size    int           `json:"size"`   // message size in bytes; default 64
	Warmup  time.Duration `json:"warmup_ns"`
	Window  time.Duration `json:"window_ns"`      // the measured active window; default 3s
	IdleFor time.Duration `json:"idle_window_ns"` // the idle window; default 2s
	Log     io.Writer     `json:"-"`              // progress; nil: none
}

func (c Config) withDefaults() Config {
	if len(c.Models) == 0 {
		c.Models = Models
	}
	if len(c.Ns) == 0 {
		c.Ns = DefaultNs
	}
	if c.K <= 0 {
		c.K = 10
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Size < 16 {
		c.Size = 64
	}
	if c.Warmup <= 0 {
		c.Warmup = 500 * time.Millisecond
	}
	if c.Window <= 0 {
		c.Window = 3 * time.Second
	}
	if c.IdleFor <= 0 {
		c.IdleFor = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// A Point is one model measured with N idle connections.
type Point struct {
	Model   string  `json:"model"`
	Backend string  `json:"backend"`
	N       int     `json:"n"` // idle connections
	K       int     `json:"k"` // active clients
	Rate    float64 `json:"rate"`
	Skipped string  `json:"skipped,omitempty"` // why the point was not measured
	// Failed says the point was not measured for an error, not for a limit
	// of the model or of the system (Skipped says which).
	Failed bool `json:"failed,omitempty"`

	// The active window.
	Messages     int64   `json:"messages"`     // echoes received in the window
	MsgPerSec    float64 `json:"msg_per_sec"`  // of them
	CPUUser      float64 `json:"cpu_user_s"`   // /proc/PID/stat, 10 ms ticks
	CPUSystem    float64 `json:"cpu_system_s"` // likewise
	CPU          float64 `json:"cpu_s"`        // schedstat: exact
	CPUPerMsgUS  float64 `json:"cpu_per_msg_us"`
	CPUPercent   float64 `json:"cpu_percent"` // of one core
	P50US        float64 `json:"p50_us"`
	P99US        float64 `json:"p99_us"`
	MaxUS        float64 `json:"max_us"`
	VolCtx       int64   `json:"voluntary_ctxt_switches"`
	InvolCtx     int64   `json:"nonvoluntary_ctxt_switches"`
	CtxPerMsg    float64 `json:"ctxt_switches_per_msg"`
	Lost         int64   `json:"lost"` // echoes not back by the end of the drain
	Threads      int     `json:"threads"`
	RSSBase      int64   `json:"rss_base_bytes"` // before the idle connections
	RSSHeld      int64   `json:"rss_held_bytes"` // with them
	RSSPerConnKB float64 `json:"rss_per_conn_kib"`

	// Everything idle: N + K connections open, nothing sent.
	IdleCPUPercent float64 `json:"idle_cpu_percent"`
	IdleWakeups    float64 `json:"idle_wakeups_per_sec"` // context switches per second
}

// Report is the outcome of Run.
type Report struct {
	Date     string        `json:"date"`
	Host     string        `json:"host"`
	Kernel   string        `json:"kernel"`
	CPU      string        `json:"cpu"`
	Cores    int           `json:"cores"`
	Go       string        `json:"go"`
	NoFile   uint64        `json:"rlimit_nofile"`
	Config   Config        `json:"config"`
	Points   []Point       `json:"points"`
	Duration time.Duration `json:"duration_ns"`
}

// Run measures every model at every N.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Exe == "" {
		return nil, errors.New("models: no cport binary to run the servers")
	}
	start := time.Now()
	rep := &Report{Date: start.UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), Go: runtime.Version(), Config: cfg}
	rep.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		rep.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	rep.CPU = cpuModel()
	rep.NoFile = openFilesLimit()
	for _, n := range cfg.Ns {
		for _, m := range cfg.Models {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			pt := Point{Model: m.Name, Backend: m.Backend, N: n, K: cfg.K, Rate: cfg.Rate}
			err := runPoint(ctx, cfg, &pt, rep.NoFile)
			if err != nil {
				var sk errSkip
				if !errors.As(err, &sk) {
					err = fmt.Errorf("%s N=%d: %w", m.Name, n, err)
					pt.Failed = true
				}
				pt.Skipped = err.Error()
				fmt.Fprintf(cfg.Log, "%-18s N=%-6d skipped: %s\n", m.Name, n, pt.Skipped)
			} else {
				fmt.Fprintf(cfg.Log, "%-18s N=%-6d cpu/msg %7.1f µs  p50 %7.0f µs  p99 %8.0f µs  ctx/msg %5.2f  rss/conn %6.2f KiB  idle cpu %.3f%%  idle wake-ups %.1f/s\n",
					m.Name, n, pt.CPUPerMsgUS, pt.P50US, pt.P99US, pt.CtxPerMsg, pt.RSSPerConnKB, pt.IdleCPUPercent, pt.IdleWakeups)
			}
			rep.Points = append(rep.Points, pt)
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	var model string
	fields(b, func(k string, v []byte) {
		if model == "" && strings.TrimSpace(k) == "model name" {
			model = string(v)
		}
	})
	return model
}

// runPoint measures one model at one N.
func runPoint(ctx context.Context, cfg Config, pt *Point, nofile uint64) error {
	n := pt.N
	// Each side holds one descriptor per connection, plus a few of its own.
	if need := uint64(n + cfg.K + 64); nofile > 0 && need > nofile {
		return skipf("%d connections need %d descriptors in the server and in this driver, but RLIMIT_NOFILE is %d (and cannot be raised here)", n+cfg.K, need, nofile)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	srv, addr, err := startServer(ctx, cfg.Exe, pt.Backend)
	if err != nil {
		return err
	}
	defer srv.stop()
	pid := srv.cmd.Process.Pid
	sleepCtx(ctx, 200*time.Millisecond) // let it settle
	base, err := sample(pid)
	if err != nil {
		return err
	}

	idle, err := dialMany(ctx, addr, n)
	defer closeAll(idle)
	if err != nil {
		return fmt.Errorf("opening %d idle connections: %w", n, err)
	}
	if err := pingAll(idle, cfg.Size); err != nil {
		if pt.Backend == "select" && n+cfg.K > selectSetSize-16 {
			return skipf("the select server refused the connections past FD_SETSIZE (%d), as the model predicts: %s", selectSetSize, srv.stderr())
		}
		return fmt.Errorf("checking the %d idle connections: %w (server: %s)", n, err, srv.stderr())
	}
	runtime.GC()
	sleepCtx(ctx, 100*time.Millisecond)
	held, err := sample(pid)
	if err != nil {
		return err
	}
	pt.RSSBase, pt.RSSHeld = base.rss, held.rss
	pt.RSSPerConnKB = float64(held.rss-base.rss) / float64(n) / 1024

	active, err := dialMany(ctx, addr, cfg.K)
	defer closeAll(active)
	if err != nil {
		return fmt.Errorf("opening %d active connections: %w", cfg.K, err)
	}
	if err := drive(ctx, cfg, pt, active, pid); err != nil {
		return err
	}

	// Everything idle.
	sleepCtx(ctx, 300*time.Millisecond)
	i0, err := sample(pid)
	if err != nil {
		return err
	}
	sleepCtx(ctx, cfg.IdleFor)
	i1, err := sample(pid)
	if err != nil {
		return err
	}
	wall := i1.at.Sub(i0.at).Seconds()
	pt.IdleCPUPercent = 100 * (i1.cpu() - i0.cpu()).Seconds() / wall
	pt.IdleWakeups = float64(i1.vol+i1.invol-i0.vol-i0.invol) / wall
	return nil
}

// drive runs the K active clients at the fixed rate and measures the window.
func drive(ctx context.Context, cfg Config, pt *Point, conns []*net.TCPConn, pid int) error {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	epoch := time.Now()
	from := epoch.Add(cfg.Warmup)
	to := from.Add(cfg.Window)
	var (
		mu       sync.Mutex
		lat      []time.Duration
		received atomic.Int64
		sent     atomic.Int64
		inWin    atomic.Int64
		wgS, wgR sync.WaitGroup
		failure  atomic.Value
	)
	for i, c := range conns {
		wgS.Add(1)
		wgR.Add(1)
		offset := interval * time.Duration(i) / time.Duration(len(conns)) // spread the senders over the interval
		go func() {                                                       // sender: open loop, the due time in every message
			defer wgS.Done()
			msg := make([]byte, cfg.Size)
			for k := 0; ; k++ {
				due := epoch.Add(offset + time.Duration(k)*interval)
				if !due.Before(to) {
					return
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				// The time of the write, not the due time: the sender's
				// own timer lateness is not the server's latency.
				binary.LittleEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
				if _, err := c.Write(msg); err != nil {
					failure.CompareAndSwap(nil, err)
					return
				}
				sent.Add(1)
			}
		}()
		go func() { // reader: the echoes
			defer wgR.Done()
			buf := make([]byte, cfg.Size)
			var local []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						failure.CompareAndSwap(nil, err)
					}
					return
				}
				now := time.Now()
				at := time.Unix(0, int64(binary.LittleEndian.Uint64(buf)))
				received.Add(1)
				if !at.Before(from) && at.Before(to) {
					local = append(local, now.Sub(at))
				}
				if !now.Before(from) && now.Before(to) {
					inWin.Add(1)
				}
			}
		}()
	}
	var s0, s1 usage
	var err0, err1 error
	if sleepUntil(ctx, from) {
		s0, err0 = sample(pid)
	}
	if sleepUntil(ctx, to) {
		s1, err1 = sample(pid)
	}
	wgS.Wait()
	for drain := time.Now().Add(3 * time.Second); received.Load() < sent.Load() && time.Now().Before(drain); {
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now()) // the readers return
	}
	wgR.Wait()
	for _, c := range conns {
		c.SetReadDeadline(time.Time{})
	}
	if err := errors.Join(ctx.Err(), err0, err1); err != nil {
		return err
	}
	if f := failure.Load(); f != nil {
		return fmt.Errorf("active clients: %v", f)
	}
	wall := s1.at.Sub(s0.at).Seconds()
	pt.Messages = inWin.Load()
	pt.MsgPerSec = float64(pt.Messages) / wall
	pt.Lost = sent.Load() - received.Load()
	pt.CPUUser = (s1.user - s0.user).Seconds()
	pt.CPUSystem = (s1.system - s0.system).Seconds()
	pt.CPU = (s1.cpu() - s0.cpu()).Seconds()
	pt.CPUPercent = 100 * pt.CPU / wall
	pt.VolCtx, pt.InvolCtx = s1.vol-s0.vol, s1.invol-s0.invol
	pt.Threads = s1.threads
	if pt.Messages > 0 {
		pt.CPUPerMsgUS = 1e6 * pt.CPU / float64(pt.Messages)
		pt.CtxPerMsg = float64(pt.VolCtx+pt.InvolCtx) / float64(pt.Messages)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		q := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e3
		}
		pt.P50US, pt.P99US, pt.MaxUS = q(0.50), q(0.99), float64(lat[len(lat)-1])/1e3
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	return sleepCtx(ctx, time.Until(t))
}

// server is a child "cport models serve".
type server struct {
	cmd  *exec.Cmd
	errb *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() < 4096 {
		b.b.Write(p)
	}
	return len(p), nil
}

func (s *server) stderr() string {
	s.errb.mu.Lock()
	defer s.errb.mu.Unlock()
	return strings.TrimSpace(s.errb.b.String())
}

func startServer(ctx context.Context, exe, backend string) (*server, string, error) {
	cmd := exec.CommandContext(ctx, exe, "models", "serve", "--backend", backend, "--addr", "127.0.0.1:0")
	s := &server{cmd: cmd, errb: &lockedBuffer{}}
	cmd.Stderr = s.errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		s.stop()
		return nil, "", fmt.Errorf("starting the %s server: %q %v %s", backend, line, err, s.stderr())
	}
	return s, addr, nil
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// dialMany opens n connections to addr, a few at a time.
func dialMany(ctx context.Context, addr string, n int) ([]*net.TCPConn, error) {
	conns := make([]*net.TCPConn, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	var d net.Dialer
	for range min(n, 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp4", addr)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				tc := c.(*net.TCPConn)
				tc.SetLinger(0) // close with a reset: no TIME_WAIT piles up over the points
				conns[i] = tc
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return conns, e.(error)
	}
	return conns, nil
}

// pingAll sends one message on every connection and reads its echo: every
// connection is accepted and watched by the server.
func pingAll(conns []*net.TCPConn, size int) error {
	msg := make([]byte, size)
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range conns {
		c.SetDeadline(deadline)
		if _, err := c.Write(msg); err != nil {
			return err
		}
	}
	for i, c := range conns {
		if _, err := io.ReadFull(c, msg); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		c.SetDeadline(time.Time{})
	}
	return nil
}

func closeAll(conns []*net.TCPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
