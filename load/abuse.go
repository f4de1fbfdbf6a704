package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport/chat"
)

// AbuseConfig configures Abuse. Every zero field means its default, which
// depends on Short for durations and counts.
type AbuseConfig struct {
	// Addr is the server's TCP address. Default DefaultAddr.
	Addr string
	// Framing is the server's framing: chat.Frame or chat.Line. The zero
	// value (chat.Raw) means chat.Frame.
	Framing chat.Framing
	// Cases are the names of the cases to run, in their order
	// (AbuseCases); none, or "all", means every case, sigterm only with
	// AllowSignal.
	Cases []string
	// Short scales the defaults down for a quick check: phases under a
	// second, hundreds of connections instead of thousands. Throughput is
	// then reported but not judged: a phase that short, on a machine the
	// tool shares with the server, measures the scheduler as much as the
	// server (the criteria of speed are for full-length runs).
	Short bool

	// Good is how many good clients chat, each a sender. Default 20.
	Good int
	// Size is the size of the good clients' messages, as Config.Size.
	// Default DefaultSize.
	Size int
	// Window is how many of its messages a good client keeps in flight.
	// Default DefaultWindow.
	Window int

	// Baseline, Abuse and Recovery are the lengths of the phases. Defaults
	// 5s, 10s, 5s (short: 300ms, 700ms, 300ms).
	Baseline, Abuse, Recovery time.Duration
	// Wait bounds how much longer than Abuse the abuse phase may last for
	// the cases that wait for something: the server to close the abusers
	// (stalled, drip, oversize, garbage, half-open), the churn or the
	// connects to end (churn, one-address), the server to exit (sigterm).
	// Default 60s (short: 10s).
	Wait time.Duration
	// Settle bounds the wait, before each case, for the server to come
	// back to the descriptors it held before the first (with ServerPID)
	// and to have accepted every connection. Default 30s (short: 5s).
	Settle time.Duration

	// Stalled is how many clients never read (stalled case). Default a
	// tenth of Good, at least 2.
	Stalled int
	// HalfOpen is how many clients send half a message and go silent
	// (half-open case). Default 10 (short: 4).
	HalfOpen int
	// ChurnTotal and ChurnConcurrent are the churn case's connections in
	// all and at once. Defaults 20,000 and 500 (short: 1,000 and 100).
	ChurnTotal, ChurnConcurrent int
	// OneAddress is how many connections the one-address case opens from
	// one source address. Default 15,000 (short: 1,000).
	OneAddress int
	// Oversize is the length the oversize frame announces, or how long
	// the oversize line goes, in bytes; it also bounds what the garbage
	// case sends. Default 1 GiB.
	Oversize int64
	// DripInterval is how often the drip sends its next byte. Default 1s.
	DripInterval time.Duration
	// DripSize is the size of the message the drip starts (frame: its
	// payload; line: with its '\n', never sent). Default 4096.
	DripSize int
	// FloodNoRead makes the flooder read nothing.
	FloodNoRead bool

	// AllowSignal lets the sigterm case send SIGTERM to ServerPID.
	AllowSignal bool
	// ServerPID, when positive, is the server's process id: its
	// descriptors, threads and memory are reported by phase. The sigterm
	// case needs it.
	ServerPID int

	// RegisterTimeout and DrainTimeout are as in Config, for the good
	// clients of each case.
	RegisterTimeout, DrainTimeout time.Duration

	// Progress, when set, is called every ProgressInterval from another
	// goroutine, and not after Abuse returns: phase "CASE PHASE", Done of
	// Total milliseconds.
	Progress func(Progress)
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
}

// Defaults of AbuseConfig.
const (
	DefaultAbuseGood    = 20
	DefaultOneAddress   = 15000
	DefaultOversize     = 1 << 30
	DefaultDripInterval = time.Second
	DefaultDripSize     = 4096
)

const (
	abuseStalledRcvBuf  = 4 << 10 // SO_RCVBUF of the stalled, half-open and one-address clients
	abuseSampleEvery    = 100 * time.Millisecond
	abuseStatePollEvery = 50 * time.Millisecond
	abuseWriteChunk     = 64 << 10
)

func (c AbuseConfig) withDefaults() AbuseConfig {
	pick := func(long, short time.Duration) time.Duration {
		if c.Short {
			return short
		}
		return long
	}
	count := func(long, short int) int {
		if c.Short {
			return short
		}
		return long
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Framing == chat.Raw {
		c.Framing = chat.Frame
	}
	if c.Good == 0 {
		c.Good = DefaultAbuseGood
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Baseline == 0 {
		c.Baseline = pick(5*time.Second, 300*time.Millisecond)
	}
	if c.Abuse == 0 {
		c.Abuse = pick(10*time.Second, 700*time.Millisecond)
	}
	if c.Recovery == 0 {
		c.Recovery = pick(5*time.Second, 300*time.Millisecond)
	}
	if c.Wait == 0 {
		c.Wait = pick(60*time.Second, 10*time.Second)
	}
	if c.Settle == 0 {
		c.Settle = pick(30*time.Second, 5*time.Second)
	}
	if c.Stalled == 0 {
		c.Stalled = max(2, c.Good/10)
	}
	if c.HalfOpen == 0 {
		c.HalfOpen = count(10, 4)
	}
	if c.ChurnTotal == 0 {
		c.ChurnTotal = count(DefaultChurnTotal, 1000)
	}
	if c.ChurnConcurrent == 0 {
		c.ChurnConcurrent = count(DefaultChurnConcurrent, 100)
	}
	if c.OneAddress == 0 {
		c.OneAddress = count(DefaultOneAddress, 1000)
	}
	if c.Oversize == 0 {
		c.Oversize = DefaultOversize
	}
	if c.DripInterval == 0 {
		c.DripInterval = DefaultDripInterval
	}
	if c.DripSize == 0 {
		c.DripSize = DefaultDripSize
	}
	if c.RegisterTimeout <= 0 {
		c.RegisterTimeout = DefaultRegisterTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	return c
}

// check reports a configuration that cannot run, defaults applied, and
// returns the cases to run.
func (c AbuseConfig) check() ([]*abuseSpec, error) {
	if err := CheckAddrs([]string{c.Addr}); err != nil {
		return nil, err
	}
	if c.Framing != chat.Frame && c.Framing != chat.Line {
		return nil, fmt.Errorf("load: framing %s cannot be checked: use frame or line", c.Framing)
	}
	if _, err := newCodec(c.Framing, c.Size); err != nil {
		return nil, err
	}
	switch {
	case c.Good < 1 || c.Window < 1:
		return nil, fmt.Errorf("load: abuse with %d good clients, window %d: want at least 1 of each", c.Good, c.Window)
	case c.Baseline < 0 || c.Abuse < 0 || c.Recovery < 0 || c.Wait < 0 || c.Settle < 0 || c.DripInterval < 0:
		return nil, errors.New("load: abuse: negative duration")
	case c.Stalled < 0 || c.HalfOpen < 0 || c.ChurnTotal < 0 || c.ChurnConcurrent < 0 || c.OneAddress < 0 || c.Oversize < 0:
		return nil, errors.New("load: abuse: negative count")
	case c.DripSize <= MinSize(c.Framing):
		return nil, fmt.Errorf("load: drip size %d: want more than %d, the smallest message", c.DripSize, MinSize(c.Framing))
	case c.ServerPID < 0:
		return nil, fmt.Errorf("load: server pid %d: want a positive process id", c.ServerPID)
	}
	all := len(c.Cases) == 0 || len(c.Cases) == 1 && c.Cases[0] == "all"
	var specs []*abuseSpec
	for _, s := range abuseSpecs() {
		if all || slices.Contains(c.Cases, s.name) {
			specs = append(specs, s)
		}
	}
	if !all {
		for _, name := range c.Cases {
			if !slices.ContainsFunc(specs, func(s *abuseSpec) bool { return s.name == name }) {
				return nil, fmt.Errorf("load: no abuse case %q: want all or some of %s", name, strings.Join(AbuseCases(), ", "))
			}
		}
		if slices.Contains(c.Cases, caseSigterm) {
			switch {
			case !c.AllowSignal:
				return nil, errors.New("load: the sigterm case signals the server: allow it explicitly")
			case c.ServerPID == 0:
				return nil, errors.New("load: the sigterm case needs the server's process id")
			}
		}
	}
	return specs, checkFiles(c.Good + max(c.Stalled, c.HalfOpen, c.ChurnConcurrent, c.OneAddress) + 8)
}

// AbuseCases returns the names of the abuse cases, in the order Abuse
// runs them.
func AbuseCases() []string {
	var names []string
	for _, s := range abuseSpecs() {
		names = append(names, s.name)
	}
	return names
}

// Abuse runs abuse cases against a running chat server (docs/RELIABILITY.md
// describes them): in each, good clients chat through a baseline phase, an
// abuse phase while abusers attack the server, and a recovery phase; the
// report gives, by phase, what the good clients got and what the server
// and the kernel held, and what became of the abusers. It returns an error
// when the configuration cannot run; a case that cannot run is reported
// failed, and the next cases run.
func Abuse(ctx context.Context, cfg AbuseConfig) (*AbuseReport, error) {
	cfg = cfg.withDefaults()
	specs, err := cfg.check()
	if err != nil {
		return nil, err
	}
	ar := &abuseRun{cfg: cfg, port: -1}
	if _, p, err := net.SplitHostPort(cfg.Addr); err == nil {
		ar.port, _ = strconv.Atoi(p)
	}
	if cfg.ServerPID > 0 {
		if ar.base, err = sampleUsage(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("load: reading the server's usage: %w", err)
		}
	}
	rep := &AbuseReport{Addr: cfg.Addr, Framing: cfg.Framing.String(), Good: cfg.Good, Size: cfg.Size, Window: cfg.Window, ServerPID: cfg.ServerPID}
	if cfg.Progress != nil {
		defer everyTick(cfg.ProgressInterval, ar.progress)()
	}
	for _, spec := range specs {
		if ctx.Err() != nil {
			rep.Interrupted = true
			break
		}
		rep.Cases = append(rep.Cases, ar.runCase(ctx, spec))
	}
	return rep, nil
}

// An abuseRun is the state of one Abuse.
type abuseRun struct {
	cfg  AbuseConfig
	port int
	base ProcUsage // the server before the first case
	cur  atomic.Pointer[abuseCase]
}

// progress reports the current case's progress.
func (ar *abuseRun) progress() {
	if ac := ar.cur.Load(); ac != nil {
		ar.cfg.Progress(ac.progress())
	}
}

// settle waits until the server holds no more descriptors than before the
// first case (with ServerPID) and has accepted every connection, or the
// settle timeout passes; it returns how long it waited.
func (ar *abuseRun) settle(ctx context.Context) time.Duration {
	start := time.Now()
	deadline := start.Add(ar.cfg.Settle)
	for {
		settled := acceptQueued(ar.port) <= 0
		if settled && ar.cfg.ServerPID > 0 {
			u, err := sampleUsage(ar.cfg.ServerPID)
			settled = err != nil || u.FDs <= ar.base.FDs
		}
		if settled || !time.Now().Before(deadline) {
			return time.Since(start)
		}
		t := time.NewTimer(abuseSampleEvery)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return time.Since(start)
		}
	}
}

// An abuseAction is the abusers of one case at work.
type abuseAction interface {
	// done reports whether the abuse phase may end before Wait: what the
	// case waits for has happened.
	done() bool
	// endAbuse is called when the abuse phase ends.
	endAbuse()
	// finish is called at the end of the case, before the good clients
	// close: the abusers stop, and the report is filled.
	finish(rep *AbuseCaseReport)
}

// A mark is the state of a case at a phase boundary.
type mark struct {
	at        time.Time
	delivered int64 // good clients' deliveries so far
	errs      int64 // duplicated, reordered and corrupted so far
	done      int   // good clients whose connection ended
	sent      []uint64
	srv       *ProcUsage
	tcp       *Sockstat
}

// An abuseCase is the state of one case of an Abuse.
type abuseCase struct {
	ar   *abuseRun
	cfg  AbuseConfig
	spec *abuseSpec
	rep  *AbuseCaseReport
	r    *run // the good clients

	foreign   atomic.Int64
	stop      chan struct{} // closed to stop the good senders
	connected atomic.Bool   // r.clients is complete

	// The phase for progress reports.
	phaseName  atomic.Pointer[string]
	phaseStart atomic.Int64 // unix nanoseconds
	phaseLen   atomic.Int64

	marks []mark

	mu      sync.Mutex // guards what follows, for the sampler
	peakSrv *ProcUsage
	peakTCP *Sockstat
	srvErr  string
}

// runCase runs one case and returns its report.
func (ar *abuseRun) runCase(ctx context.Context, spec *abuseSpec) AbuseCaseReport {
	cfg := ar.cfg
	rep := AbuseCaseReport{Case: spec.name, What: spec.what(&cfg), Criterion: spec.criterion()}
	if spec.name == caseSigterm && (!cfg.AllowSignal || cfg.ServerPID == 0) {
		rep.Skipped = "it signals the server: it runs only when allowed, with the server's pid"
		return rep
	}
	rep.Settle = ar.settle(ctx)

	runCfg := Config{Addrs: []string{cfg.Addr}, Framing: cfg.Framing, Clients: cfg.Good, Senders: cfg.Good,
		Size: cfg.Size, Window: cfg.Window, ConnectRate: -1, RegisterTimeout: cfg.RegisterTimeout, DrainTimeout: cfg.DrainTimeout}.withDefaults()
	r, err := newRun(runCfg)
	if err != nil {
		rep.Err = err.Error()
		return rep
	}
	ac := &abuseCase{ar: ar, cfg: cfg, spec: spec, rep: &rep, r: r, stop: make(chan struct{})}
	ac.setPhase("connect", 0)
	ar.cur.Store(ac)
	defer ar.cur.Store(nil)
	defer r.close()

	if err := ac.connect(ctx); err != nil {
		rep.Err = err.Error()
		return rep
	}
	for _, c := range r.senders {
		r.senderGroup.Add(1)
		go func() {
			defer r.senderGroup.Done()
			c.closedLoop(ac.stop, cfg.Window)
		}()
	}
	stopSampling := everyTick(abuseSampleEvery, func() { ac.sample() })

	// Baseline.
	ac.mark()
	ac.setPhase(PhaseBaseline, cfg.Baseline)
	ok := ac.hold(ctx, cfg.Baseline, nil, 0)
	ac.mark()

	// Abuse.
	var act abuseAction
	if ok {
		ac.setPhase(PhaseAbuse, cfg.Abuse)
		act, err = spec.start(ac, ctx)
		if err != nil {
			rep.Err = "starting the abuse: " + err.Error()
		} else {
			ok = ac.hold(ctx, cfg.Abuse, act.done, cfg.Wait)
			act.endAbuse()
		}
		ac.mark()
	}

	// Recovery.
	if ok && act != nil && !spec.noRecovery {
		ac.setPhase(PhaseRecovery, cfg.Recovery)
		ok = ac.hold(ctx, cfg.Recovery, nil, 0)
		ac.mark()
	}
	stopSampling()
	if act != nil {
		act.finish(&rep)
	}
	rep.Interrupted = !ok
	ac.setPhase("drain", 0)
	ac.count()
	if rep.Err == "" {
		rep.judge(spec, !ac.cfg.Short)
	}
	return rep
}

// connect connects the good clients, each through a foreignFilter, and
// runs the registration barrier.
func (ac *abuseCase) connect(ctx context.Context) error {
	r := ac.r
	for i := range r.clients {
		conn, err := r.dial(ctx, ac.cfg.Addr)
		if err != nil {
			return fmt.Errorf("load: connecting good client %d of %d to %s: %w", i+1, len(r.clients), ac.cfg.Addr, err)
		}
		f := newForeignFilter(conn, r.codec, ac.cfg.Good, r.bufSize, &ac.foreign)
		c := r.newClient(i, f)
		r.clients[i] = c
		r.startReader(c)
	}
	ac.connected.Store(true)
	ac.setPhase("register", 0)
	_, err := r.register(ctx)
	return err
}

// hold waits for least, then, if until is set, until it reports true or
// for at most most longer; it returns false when ctx ended first.
func (ac *abuseCase) hold(ctx context.Context, least time.Duration, until func() bool, most time.Duration) bool {
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		since := time.Since(start)
		if since >= least && (until == nil || until() || since >= least+most) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// setPhase enters a phase, for progress reports.
func (ac *abuseCase) setPhase(name string, length time.Duration) {
	ac.phaseStart.Store(time.Now().UnixNano())
	ac.phaseLen.Store(int64(length))
	ac.phaseName.Store(&name)
}

// progress returns a snapshot of the case.
func (ac *abuseCase) progress() Progress {
	p := Progress{Phase: Phase(ac.spec.name + " " + *ac.phaseName.Load())}
	if length := time.Duration(ac.phaseLen.Load()); length > 0 {
		p.Total = length.Milliseconds()
		p.Done = min(time.Since(time.Unix(0, ac.phaseStart.Load())).Milliseconds(), p.Total)
	}
	if ac.connected.Load() {
		for _, c := range ac.r.clients {
			p.Delivered += c.progress.Load()
			p.Errors += c.errCount.Load()
			p.Sent += c.sent.Load()
		}
	}
	return p
}

// sample reads the server's usage and the kernel's TCP counts, keeps
// their highest values since the last mark, and returns them (nil where
// they cannot be read).
func (ac *abuseCase) sample() (*ProcUsage, *Sockstat) {
	var srv *ProcUsage
	var serr string
	if pid := ac.cfg.ServerPID; pid > 0 {
		u, err := sampleUsage(pid)
		if gone, _ := processGone(pid); gone || err == nil && u.RSS == 0 {
			err = fmt.Errorf("process %d exited", pid) // an exiting process's figures are zeros
		}
		if err == nil {
			srv = &u
		} else {
			serr = err.Error()
		}
	}
	var tcp *Sockstat
	if s, err := readSockstat(); err == nil {
		tcp = &s
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if serr != "" && ac.srvErr == "" {
		ac.srvErr = serr
	}
	if srv != nil {
		if ac.peakSrv == nil {
			ac.peakSrv = new(ProcUsage)
			*ac.peakSrv = *srv
		}
		*ac.peakSrv = ac.peakSrv.max(*srv)
	}
	if tcp != nil {
		if ac.peakTCP == nil {
			ac.peakTCP = new(Sockstat)
			*ac.peakTCP = *tcp
		}
		*ac.peakTCP = ac.peakTCP.max(*tcp)
	}
	return srv, tcp
}

// mark records the state at a phase boundary and ends the phase before it,
// if any, in the report.
func (ac *abuseCase) mark() {
	m := mark{at: time.Now(), sent: make([]uint64, len(ac.r.senders))}
	for _, c := range ac.r.clients {
		m.delivered += c.progress.Load()
		m.errs += c.errCount.Load()
		if c.done.Load() {
			m.done++
		}
	}
	for j, c := range ac.r.senders {
		m.sent[j] = uint64(c.sent.Load())
	}
	m.srv, m.tcp = ac.sample()
	ac.mu.Lock()
	peakSrv, peakTCP := ac.peakSrv, ac.peakTCP
	ac.peakSrv, ac.peakTCP = nil, nil
	ac.mu.Unlock()
	if n := len(ac.marks); n > 0 {
		prev := ac.marks[n-1]
		ph := AbusePhase{
			Name:         *ac.phaseName.Load(),
			Duration:     m.at.Sub(prev.at),
			Deliveries:   m.delivered - prev.delivered,
			Errors:       m.errs - prev.errs,
			Disconnected: m.done - prev.done,
			Server:       m.srv,
			ServerPeak:   peakSrv,
			TCP:          m.tcp,
			TCPPeak:      peakTCP,
		}
		if secs := ph.Duration.Seconds(); secs > 0 {
			ph.DeliveriesPerSec = float64(ph.Deliveries) / secs
		}
		ac.rep.Phases = append(ac.rep.Phases, ph)
	}
	ac.marks = append(ac.marks, m)
}

// lastTCP returns the kernel's TCP counts at the last mark, or nil.
func (ac *abuseCase) lastTCP() *Sockstat {
	if n := len(ac.marks); n > 0 {
		return ac.marks[n-1].tcp
	}
	return nil
}

// count stops the good senders, drains, closes the good clients, and
// counts what they got into the report.
func (ac *abuseCase) count() {
	r, rep := ac.r, ac.rep
	close(ac.stop)
	deadline := time.Now().Add(ac.cfg.DrainTimeout)
	if !waitGroupUntil(&r.senderGroup, deadline) {
		// A sender is blocked writing to a server that stopped reading.
		for _, c := range r.senders {
			c.conn.SetWriteDeadline(time.Now())
		}
		r.senderGroup.Wait()
	}
	limit := make([]uint64, len(r.senders))
	var sent int64
	for j, c := range r.senders {
		limit[j] = uint64(c.sent.Load())
		sent += int64(limit[j])
	}
	ac.drain(sent, deadline)
	r.close()
	sentBy := slices.Clone(limit)

	if ac.spec.name == caseSigterm {
		// What the server accepted: what some client received.
		clear(limit)
		for _, c := range r.clients {
			for s, next := range c.chk.next {
				limit[s] = max(limit[s], next)
			}
		}
		var accepted int64
		for _, n := range limit {
			accepted += int64(n)
		}
		if rep.Abuser.Signal != nil {
			rep.Abuser.Signal.Accepted = accepted
		}
	}

	// Lost, by the phase the messages were sent in.
	bounds := make([][]uint64, 0, len(rep.Phases))
	for p := range rep.Phases {
		bounds = append(bounds, ac.marks[p].sent)
	}
	if len(bounds) > 0 {
		bounds[0] = make([]uint64, len(r.senders))
	}
	lost := make([]int64, max(len(rep.Phases), 1))
	for _, c := range r.clients {
		e := c.chk.errs
		rep.Good.Duplicated += e.Duplicated
		rep.Good.Reordered += e.Reordered
		rep.Good.Corrupted += e.Corrupted
		if len(bounds) > 0 {
			lostByPhase(&c.chk, bounds, limit, lost)
		} else {
			lost[0] += c.chk.missing(limit)
		}
		err := c.readErr
		if err == nil {
			err = c.sendErr
		}
		if err != nil {
			rep.Good.Disconnected++
			if rep.Disconnect == "" {
				rep.Disconnect = fmt.Sprintf("good client %d: %v", c.id, err)
			}
		}
	}
	for p := range rep.Phases {
		ph := &rep.Phases[p]
		ph.Lost = lost[p]
		hi := sentBy
		if p+1 < len(bounds) {
			hi = bounds[p+1]
		}
		for j := range hi {
			if hi[j] > bounds[p][j] {
				ph.Sent += int64(hi[j] - bounds[p][j])
			}
		}
	}
	for _, n := range lost {
		rep.Good.Lost += n
	}
	rep.Foreign = ac.foreign.Load()
	if b, a := rep.Phase(PhaseBaseline), rep.Phase(PhaseAbuse); b != nil && a != nil && b.DeliveriesPerSec > 0 {
		rep.Ratio = a.DeliveriesPerSec / b.DeliveriesPerSec
	}
	ac.mu.Lock()
	rep.ServerErr = ac.srvErr
	ac.mu.Unlock()
}

// drainQuiet is how long the deliveries may stand still before the drain
// gives up: once a good client is disconnected, the messages it had sent
// that the server had not read will never arrive.
const drainQuiet = time.Second

// drain waits until every good client still connected has received
// expected messages, the deliveries stand still for drainQuiet, or
// deadline passes.
func (ac *abuseCase) drain(expected int64, deadline time.Time) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	last := int64(-1)
	moved := time.Now()
	for {
		complete, total := true, int64(0)
		for _, c := range ac.r.clients {
			p := c.progress.Load()
			total += p
			if p < expected && !c.done.Load() {
				complete = false
			}
		}
		now := time.Now()
		if total != last {
			last, moved = total, now
		}
		if complete || now.Sub(moved) >= drainQuiet || now.After(deadline) {
			return
		}
		<-tick.C
	}
}

// lostByPhase adds to lost[p] the messages that checker k never saw, by
// the phase they were sent in: bounds[p][s] is sender s's first sequence
// number of phase p, limit[s] how many it sent (after a SIGTERM, how many
// the server accepted). Those the checker gave up tracking go to the last
// phase.
func lostByPhase(k *checker, bounds [][]uint64, limit []uint64, lost []int64) {
	add := func(s int, lo, hi uint64) {
		for p := range lost {
			plo, phi := bounds[p][s], limit[s]
			if p+1 < len(bounds) {
				phi = bounds[p+1][s]
			}
			if l, h := max(lo, plo), min(hi, phi); l < h {
				lost[p] += int64(h - l)
			}
		}
	}
	for s, next := range k.next {
		if limit[s] > next {
			add(s, next, limit[s])
		}
		for _, g := range k.gaps[uint32(s)] {
			add(s, g.lo, min(g.hi, limit[s]))
		}
	}
	lost[len(lost)-1] += int64(k.given)
}
