package load

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport/chat"
)

// ChurnConfig configures Churn. The zero value churns 20,000 connections
// through 127.0.0.1:25000, 500 at a time, each sending one frame and
// reading its echo.
type ChurnConfig struct {
	// Addr is the server's TCP address. Default DefaultAddr.
	Addr string
	// Framing is the server's framing: chat.Frame or chat.Line. The zero
	// value (chat.Raw) means chat.Frame.
	Framing chat.Framing
	// Total is how many connections are opened and closed. Default
	// DefaultChurnTotal.
	Total int
	// Concurrent is how many connections are open at once at most.
	// Default DefaultChurnConcurrent.
	Concurrent int
	// Size is the size of the message each connection sends, as
	// Config.Size. Default MinSize(Framing), the smallest.
	Size int
	// ConnectOnly makes each connection close as soon as it is open,
	// sending nothing: to the server, a client that ended its stream.
	ConnectOnly bool
	// EchoTimeout bounds one connection's write and the wait for its
	// echo. Default 15s.
	EchoTimeout time.Duration
	// ServerPID, when positive, is the server's process id: its
	// descriptors, threads and memory are read before, during and after
	// the churn.
	ServerPID int
	// SettleTimeout bounds the wait, once the last connection is closed,
	// for the server to come back to its baseline (see ChurnServer.Back).
	// Default DefaultSettleTimeout.
	SettleTimeout time.Duration
	// Progress, when set, is called every ProgressInterval from another
	// goroutine, and not after Churn returns: phase PhaseChurn (Done of
	// Total connections, Errors failed) then PhaseSettle (milliseconds).
	Progress func(Progress)
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
}

// Defaults of ChurnConfig.
const (
	DefaultChurnTotal      = 20000
	DefaultChurnConcurrent = 500
	DefaultEchoTimeout     = 15 * time.Second
	DefaultSettleTimeout   = 30 * time.Second
)

// Phases of Churn.
const (
	PhaseChurn  Phase = "churn"
	PhaseSettle Phase = "settle"
)

// churnSampleEvery is how often the server is sampled, for its peak and
// while it settles.
const churnSampleEvery = 100 * time.Millisecond

func (c ChurnConfig) withDefaults() ChurnConfig {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Framing == chat.Raw {
		c.Framing = chat.Frame
	}
	if c.Total == 0 {
		c.Total = DefaultChurnTotal
	}
	if c.Concurrent == 0 {
		c.Concurrent = DefaultChurnConcurrent
	}
	if c.Size == 0 {
		c.Size = MinSize(c.Framing)
	}
	if c.EchoTimeout <= 0 {
		c.EchoTimeout = DefaultEchoTimeout
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	return c
}

// ChurnReport is the outcome of Churn.
type ChurnReport struct {
	Addr        string `json:"addr"`
	Framing     string `json:"framing"`
	Total       int    `json:"total"`
	Concurrent  int    `json:"concurrent"`
	ConnectOnly bool   `json:"connect_only,omitempty"`
	Size        int    `json:"size,omitempty"` // of the message each sends, unless ConnectOnly
	SourceAddrs int    `json:"source_addrs"`   // local addresses the connections came from

	// Done counts the connections that did their part: opened, echo
	// received unless ConnectOnly, closed. Failures counts the others
	// (the server closed them before the echo, the echo timed out, or
	// what arrived was corrupted); FirstFailure says what befell the first.
	Done         int64  `json:"done"`
	Failures     int64  `json:"failures"`
	FirstFailure string `json:"first_failure,omitempty"`
	// Others counts the messages of other connections read while waiting
	// for an echo: every connection hears the room.
	Others int64 `json:"others"`

	Duration    time.Duration `json:"duration_ns"` // from the first connect to the last close
	PerSec      float64       `json:"connections_per_sec"`
	Interrupted bool          `json:"interrupted,omitempty"` // the context ended the churn early

	Server *ChurnServer `json:"server,omitempty"` // with ChurnConfig.ServerPID
}

// Failed reports whether a connection failed or the server did not come
// back to its baseline.
func (r *ChurnReport) Failed() bool {
	return r.Failures > 0 || r.Server != nil && !r.Server.Back()
}

// ChurnServer is what the server process held before, during and after
// the churn.
type ChurnServer struct {
	PID    int           `json:"pid"`
	Before ProcUsage     `json:"before"`    // before the first connect
	Peak   ProcUsage     `json:"peak"`      // each figure's highest, sampled every 100ms
	After  ProcUsage     `json:"after"`     // when back to the baseline, or at the settle timeout
	Settle time.Duration `json:"settle_ns"` // from the last close to After
	Err    string        `json:"error,omitempty"`
}

// Back reports whether the server came back to its baseline: as many
// descriptors as before (or fewer; not checked where they cannot be
// counted) and a resident set within twice what it was.
func (s *ChurnServer) Back() bool {
	return s.Err == "" && s.After.back(s.Before)
}

// ProcUsage is what a process holds at one moment.
type ProcUsage struct {
	FDs     int   `json:"fds"`     // open descriptors; -1 where they cannot be counted (not Linux)
	Threads int   `json:"threads"` // OS threads (a Go server's goroutines cannot be seen from outside)
	RSS     int64 `json:"rss_bytes"`
}

func (u ProcUsage) back(base ProcUsage) bool {
	return u.FDs <= base.FDs && u.RSS <= 2*base.RSS
}

func (u ProcUsage) max(v ProcUsage) ProcUsage {
	return ProcUsage{FDs: max(u.FDs, v.FDs), Threads: max(u.Threads, v.Threads), RSS: max(u.RSS, v.RSS)}
}

// sampleUsage reads what process pid holds now.
func sampleUsage(pid int) (ProcUsage, error) {
	s, err := sampleProc(pid)
	if err != nil {
		return ProcUsage{}, err
	}
	fds, err := countFDs(pid)
	if err != nil {
		return ProcUsage{}, err
	}
	return ProcUsage{FDs: fds, Threads: s.threads, RSS: s.rss}, nil
}

// countFDs counts the open descriptors of process pid (/proc/PID/fd), or
// returns -1 where there is no such count.
func countFDs(pid int) (int, error) {
	if runtime.GOOS != "linux" {
		return -1, nil
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

// A churn is the state of one Churn.
type churn struct {
	cfg ChurnConfig
	r   *run // dials, and the codec and clock of the messages

	phase      atomic.Pointer[Phase]
	phaseStart atomic.Int64 // unix nanoseconds

	next     atomic.Int64 // the next connection to open
	done     atomic.Int64
	failures atomic.Int64
	others   atomic.Int64

	mu    sync.Mutex
	first string // the first failure
	abort error  // a connect failed: the churn stops
}

// Churn opens and closes cfg.Total connections to a server, at most
// cfg.Concurrent at once: each sends one message and waits for its echo
// (or, with cfg.ConnectOnly, sends nothing), then closes. With
// cfg.ServerPID it reports the server's descriptors, threads and resident
// memory before, at their peak and after, waiting up to cfg.SettleTimeout
// once the last connection closed for the server to come back to its
// baseline. A connect that fails stops the churn with an error; a
// connection that fails later is counted.
func Churn(ctx context.Context, cfg ChurnConfig) (*ChurnReport, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.Total < 1 || cfg.Concurrent < 1:
		return nil, fmt.Errorf("load: churn of %d connections, %d at once: want at least 1 of each", cfg.Total, cfg.Concurrent)
	case cfg.ServerPID < 0:
		return nil, fmt.Errorf("load: server pid %d: want a positive process id", cfg.ServerPID)
	}
	if err := CheckAddrs([]string{cfg.Addr}); err != nil {
		return nil, err
	}
	if err := checkFiles(cfg.Concurrent); err != nil {
		return nil, err
	}
	r, err := newRun(Config{Addrs: []string{cfg.Addr}, Framing: cfg.Framing, Size: cfg.Size, Clients: 1, Senders: 1}.withDefaults())
	if err != nil {
		return nil, err
	}
	ch := &churn{cfg: cfg, r: r}
	rep := &ChurnReport{Addr: cfg.Addr, Framing: cfg.Framing.String(), Total: cfg.Total, Concurrent: cfg.Concurrent, ConnectOnly: cfg.ConnectOnly}
	if !cfg.ConnectOnly {
		rep.Size = cfg.Size
	}

	var srv *ChurnServer
	if cfg.ServerPID > 0 {
		srv = &ChurnServer{PID: cfg.ServerPID}
		rep.Server = srv
		if srv.Before, err = sampleUsage(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("load: reading the server's usage: %w", err)
		}
		srv.Peak = srv.Before
	}
	ch.setPhase(PhaseChurn)
	defer ch.startProgress()()

	// Sample the server while the connections churn, for its peak.
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if srv == nil {
			return
		}
		tick := time.NewTicker(churnSampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if u, err := sampleUsage(cfg.ServerPID); err == nil {
					srv.Peak = srv.Peak.max(u)
				} else {
					srv.Err = err.Error()
					return
				}
			}
		}
	}()

	start := time.Now()
	ch.run(ctx)
	rep.Duration = time.Since(start)
	close(stopSampling)
	<-sampled
	rep.Interrupted = ctx.Err() != nil
	rep.Done, rep.Failures, rep.Others = ch.done.Load(), ch.failures.Load(), ch.others.Load()
	rep.FirstFailure = ch.first
	rep.SourceAddrs = r.src.count()
	if rep.Duration > 0 {
		rep.PerSec = float64(rep.Done+rep.Failures) / rep.Duration.Seconds()
	}
	if ch.abort != nil {
		return nil, ch.abort
	}

	if srv != nil && srv.Err == "" {
		ch.setPhase(PhaseSettle)
		ch.settle(ctx, srv)
	}
	return rep, nil
}

// run opens and closes the connections, Concurrent goroutines each taking
// the next one until Total are taken, a connect fails or ctx is done.
func (ch *churn) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range min(ch.cfg.Concurrent, ch.cfg.Total) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := bufio.NewReaderSize(nil, max(4<<10, 2*ch.r.codec.wire))
			for ctx.Err() == nil {
				i := ch.next.Add(1) - 1
				if i >= int64(ch.cfg.Total) {
					return
				}
				conn, err := ch.r.dial(ctx, ch.cfg.Addr)
				if err != nil {
					ch.mu.Lock()
					if ch.abort == nil && ctx.Err() == nil {
						ch.abort = fmt.Errorf("load: churn: connecting connection %d of %d to %s: %w", i+1, ch.cfg.Total, ch.cfg.Addr, err)
					}
					ch.mu.Unlock()
					cancel()
					return
				}
				if !ch.cfg.ConnectOnly {
					rd.Reset(conn)
					err = ch.echo(conn, rd, uint32(i))
				}
				conn.Close()
				if err != nil {
					ch.fail(fmt.Errorf("connection %d: %w", i+1, err))
				} else {
					ch.done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

// fail counts a failed connection.
func (ch *churn) fail(err error) {
	if ch.failures.Add(1) == 1 {
		ch.mu.Lock()
		ch.first = err.Error()
		ch.mu.Unlock()
	}
}

// errCorrupted reports a message that arrived damaged.
var errCorrupted = errors.New("a corrupted message arrived")

// echo sends connection id's message on conn and reads what arrives until
// its echo, skipping the messages of other connections.
func (ch *churn) echo(conn net.Conn, rd *bufio.Reader, id uint32) error {
	conn.SetDeadline(time.Now().Add(ch.cfg.EchoTimeout))
	cd := ch.r.codec
	h := header{kind: kindData, sender: id, time: ch.r.now()}
	if _, err := conn.Write(cd.append(make([]byte, 0, cd.wire), h)); err != nil {
		return err
	}
	for {
		body, err := ch.readMessage(rd)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the server closed the connection before the echo: %w", err)
		} else if err != nil {
			return fmt.Errorf("reading before the echo: %w", err)
		}
		got, st := cd.parse(body)
		if st != intact {
			return errCorrupted
		}
		if got == h {
			return nil
		}
		ch.others.Add(1)
	}
}

// readMessage returns the body of the next message rd holds (without its
// frame header or '\n'), valid until the next read.
func (ch *churn) readMessage(rd *bufio.Reader) ([]byte, error) {
	if ch.cfg.Framing == chat.Line {
		line, err := rd.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errCorrupted // longer than any message of the run
		}
		if err != nil {
			return nil, err
		}
		return line[:len(line)-1], nil
	}
	hdr, err := rd.Peek(4)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr))
	if n > rd.Size()-4 {
		return nil, errCorrupted // longer than any message of the run
	}
	rd.Discard(4)
	body, err := rd.Peek(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	rd.Discard(n) // body stays valid: nothing is read into the buffer until the next Peek
	return body, nil
}

// settle samples the server until it is back to its baseline with no
// connection left in its accept queue (on Linux; one still queued has not
// yet cost the server anything), the settle timeout passes or ctx is done,
// and records the last sample as After.
func (ch *churn) settle(ctx context.Context, srv *ChurnServer) {
	port := -1
	if _, p, err := net.SplitHostPort(ch.cfg.Addr); err == nil {
		port, _ = strconv.Atoi(p)
	}
	start := time.Now()
	deadline := start.Add(ch.cfg.SettleTimeout)
	tick := time.NewTicker(churnSampleEvery)
	defer tick.Stop()
	for {
		u, err := sampleUsage(srv.PID)
		if err != nil {
			srv.Err = err.Error()
			return
		}
		srv.Peak = srv.Peak.max(u)
		srv.After, srv.Settle = u, time.Since(start)
		if u.back(srv.Before) && acceptQueued(port) <= 0 || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// setPhase starts phase p, for progress reports.
func (ch *churn) setPhase(p Phase) {
	ch.phaseStart.Store(time.Now().UnixNano())
	ch.phase.Store(&p)
}

// startProgress calls the progress callback every ProgressInterval until
// stop is called.
func (ch *churn) startProgress() (stop func()) {
	if ch.cfg.Progress == nil {
		return func() {}
	}
	return everyTick(ch.cfg.ProgressInterval, func() {
		p := Progress{Phase: *ch.phase.Load(), Errors: ch.failures.Load()}
		switch p.Phase {
		case PhaseChurn:
			p.Done, p.Total = ch.done.Load()+p.Errors, int64(ch.cfg.Total)
		case PhaseSettle:
			p.Done = min(time.Since(time.Unix(0, ch.phaseStart.Load())), ch.cfg.SettleTimeout).Milliseconds()
			p.Total = ch.cfg.SettleTimeout.Milliseconds()
		}
		ch.cfg.Progress(p)
	})
}
