package load

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport/chat"
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// readBuffer is the size of each receiver's read buffer (its inbox),
// unless a message needs more. Only its first pages are touched while the
// receiver keeps up: what a read leaves incomplete moves to the front.
const readBuffer = 64 << 10

// A run is the state shared by the goroutines of one Run or Idle.
type run struct {
	cfg     Config
	codec   *codec
	bufSize int
	epoch   time.Time // the run's clock starts here: see now
	src     *sources
	ownOf   []int32 // client id → sender index, or -1
	idle    bool    // nothing is sent but probes
	lat     latencyShards

	// clients[i] is written once by the goroutine that connected it; others
	// read the slice after connect returns.
	clients []*client
	senders []*client // by sender index, once connected

	from, to atomic.Int64 // the measured window on the run's clock; MaxInt64 until set

	connected  atomic.Int64
	registered atomic.Int64  // clients that received a probe
	allIn      chan struct{} // closed when registered reaches the client count
	closing    atomic.Bool   // the run is closing the connections: read errors are expected
	// skipEmpty lets receivers wait for more after a short read without
	// reading EAGAIN first (see shortReadDrains), from the senders' start
	// to the drain's.
	skipEmpty atomic.Bool

	readers     sync.WaitGroup // receive sides: reader goroutines, and clients of the poll loops
	poll        pollers        // the poll loops, which read most clients on Linux
	senderGroup sync.WaitGroup // sender goroutines

	phase      atomic.Pointer[Phase]
	phaseStart atomic.Int64 // run clock at the phase's start
	phaseLen   atomic.Int64 // the phase's planned length, for timed phases
	expected   atomic.Int64 // messages each receiver awaits, during the drain
}

func newRun(cfg Config) (*run, error) {
	newCd := newCodec
	if cfg.WebSocket {
		newCd = func(_ chat.Framing, size int) (*codec, error) { return newWSCodec(size) }
	}
	cd, err := newCd(cfg.Framing, cfg.Size)
	if err != nil {
		return nil, err
	}
	r := &run{
		cfg:     cfg,
		codec:   cd,
		bufSize: max(readBuffer, 2*cd.wire),
		epoch:   time.Now(),
		src:     newSources(cfg.Addrs, cfg.Clients),
		ownOf:   make([]int32, cfg.Clients),
		clients: make([]*client, cfg.Clients),
		senders: make([]*client, cfg.Senders),
		allIn:   make(chan struct{}),
	}
	r.from.Store(math.MaxInt64)
	r.to.Store(math.MaxInt64)
	for i := range r.ownOf {
		r.ownOf[i] = -1
	}
	for j := range cfg.Senders {
		r.ownOf[senderClient(j, cfg.Senders, cfg.Clients, len(cfg.Addrs))] = int32(j)
	}
	return r, nil
}

// senderClient returns the client that is sender j of senders, among
// clients spread round-robin over servers (client i on server i % servers;
// senders ≥ servers, clients ≥ senders). Sender j is on server s = j %
// servers, and the senders of a server are spread over its clients'
// connection order, and so over its fan-out order.
func senderClient(j, senders, clients, servers int) int {
	s := j % servers
	onServer := (clients - s + servers - 1) / servers // clients of server s
	sending := (senders - s + servers - 1) / servers  // senders of server s
	k := j / servers                                  // sender j is the kth of server s
	return s + servers*(k*onServer/sending)
}

// now returns the run's clock: monotonic nanoseconds since the run began.
func (r *run) now() int64 { return int64(time.Since(r.epoch)) }

// window returns the measured window [from, to) on the run's clock.
func (r *run) window() (from, to int64) { return r.from.Load(), r.to.Load() }

func (r *run) senderOf(id int) int32 { return r.ownOf[id] }

// startReader starts c's receive side; it is connect's callback.
func (r *run) startReader(c *client) {
	if c.own >= 0 {
		r.senders[c.own] = c
	}
	r.readers.Add(1)
	if !r.poll.add(r, c) {
		go c.read()
	}
	r.connected.Add(1)
}

// registeredOne counts a client that received a probe through every server.
func (r *run) registeredOne() {
	if r.registered.Add(1) == int64(len(r.clients)) {
		close(r.allIn)
	}
}

// register runs the registration barrier (see the package documentation)
// and returns how many probes it sent. Each round sends one probe through
// every server, from its first client (client s is on server s).
func (r *run) register(ctx context.Context) (int, error) {
	deadline := time.Now().Add(r.cfg.RegisterTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	servers := len(r.cfg.Addrs)
	var msg []byte
	probes := 0
	quiet := 50 * time.Millisecond
	for round := 0; ; round++ {
		for s := range servers {
			msg = r.clients[s].appendMsg(msg[:0], header{kind: kindProbe, sender: uint32(round*servers + s), time: r.now()})
			if _, err := r.clients[s].conn.Write(msg); err != nil {
				return probes, fmt.Errorf("load: sending a registration probe to %s: %w", r.cfg.Addrs[s], err)
			}
			probes++
		}
		last, changed := r.registered.Load(), time.Now()
		for {
			select {
			case <-r.allIn:
				return probes, nil
			case <-ctx.Done():
				return probes, ctx.Err()
			case now := <-tick.C:
				if now.After(deadline) {
					return probes, r.registerTimeout(probes)
				}
				if n := r.registered.Load(); n != last {
					last, changed = n, now
					continue
				}
				if now.Sub(changed) < quiet {
					continue
				}
			}
			break // the count stalled: some clients were not registered yet
		}
		quiet = min(2*quiet, time.Second)
	}
}

// registerTimeout explains why the registration barrier failed.
func (r *run) registerTimeout(probes int) error {
	if r.cfg.WebSocket {
		return fmt.Errorf("load: after %v, the servers had registered only %d of %d WebSocket clients (%d probes sent; do they relay to WebSocket clients, and echo?)",
			r.cfg.RegisterTimeout, r.registered.Load(), len(r.clients), probes)
	}
	if len(r.cfg.Addrs) == 1 {
		return fmt.Errorf("load: after %v, the server had registered only %d of %d clients (%d probes sent; "+
			"is %s the server's framing, and does it echo?)",
			r.cfg.RegisterTimeout, r.registered.Load(), len(r.clients), probes, r.cfg.Framing)
	}
	return fmt.Errorf("load: after %v, only %d of %d clients had received a probe through each of the %d servers (%d probes sent; "+
		"is %s their framing, do they echo, and are they servers of one cluster, with the same NATS and cluster name?)",
		r.cfg.RegisterTimeout, r.registered.Load(), len(r.clients), len(r.cfg.Addrs), probes, r.cfg.Framing)
}

// setPhase enters a phase planned to last length (0: untimed).
func (r *run) setPhase(p Phase, length time.Duration) {
	r.phaseStart.Store(r.now())
	r.phaseLen.Store(int64(length))
	r.phase.Store(&p)
}

// startProgress calls cfg.Progress periodically until the returned
// function is called.
func (r *run) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	return everyTick(r.cfg.ProgressInterval, func() {
		if p, ok := r.progress(); ok {
			r.cfg.Progress(p)
		}
	})
}

// everyTick calls f every interval, on a goroutine of its own, until the
// returned function is called; that function returns once f has.
func everyTick(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				f()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// progress returns a snapshot of the run.
func (r *run) progress() (Progress, bool) {
	ph := r.phase.Load()
	if ph == nil {
		return Progress{}, false
	}
	p := Progress{Phase: *ph}
	if p.Phase == PhaseConnect { // clients is being filled
		p.Done, p.Total = r.connected.Load(), int64(len(r.clients))
		return p, true
	}
	for _, c := range r.clients {
		p.Delivered += c.progress.Load()
		p.Errors += c.errCount.Load()
	}
	for _, c := range r.senders {
		p.Sent += c.sent.Load()
	}
	switch p.Phase {
	case PhaseRegister:
		p.Done, p.Total = r.registered.Load(), int64(len(r.clients))
	case PhaseDrain:
		p.Done, p.Total = p.Delivered, r.expected.Load()*int64(len(r.clients))
	default:
		p.Done = (r.now() - r.phaseStart.Load()) / int64(time.Millisecond)
		p.Total = r.phaseLen.Load() / int64(time.Millisecond)
		p.Done = min(p.Done, p.Total)
	}
	return p, true
}

// setup connects every client and runs the registration barrier.
func (r *run) setup(ctx context.Context) (Setup, error) {
	var s Setup
	r.setPhase(PhaseConnect, 0)
	t := time.Now()
	err := r.connect(ctx, r.startReader)
	s.Connect = time.Since(t)
	s.SourceAddrs = r.src.count()
	if err != nil {
		return s, err
	}
	r.setPhase(PhaseRegister, 0)
	t = time.Now()
	s.Probes, err = r.register(ctx)
	s.Register = time.Since(t)
	return s, err
}

// stopSkipping makes the receivers read until EAGAIN before they wait
// again. A short read that took the last data left an end of stream or an
// error behind it unread when their arrival was signalled before the read:
// nothing will signal them again. So each receiver is woken once (a read
// deadline in the past), to read the socket until EAGAIN; then the drain
// sees every connection that the servers closed.
func (r *run) stopSkipping() {
	if !r.skipEmpty.Swap(false) {
		return
	}
	now := time.Now()
	for _, c := range r.clients {
		if c != nil {
			c.conn.SetReadDeadline(now)
		}
	}
}

// close closes every connection and waits for every goroutine.
func (r *run) close() {
	r.closing.Store(true)
	for _, c := range r.clients {
		if c != nil {
			c.conn.Close()
		}
	}
	r.poll.stop()
	r.senderGroup.Wait()
	r.readers.Wait()
}

// sleepUntil waits until the run's clock reads t, or ctx ends; it returns
// false in the second case.
func (r *run) sleepUntil(ctx context.Context, t int64) bool {
	d := time.Duration(t - r.now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run runs a load test as cfg says (see the package documentation) and
// returns its report. It returns an error when the test could not run:
// connect or registration failed. Checking failures are in the report
// (Report.Failed). When ctx ends during the warm-up or the measured window,
// the senders stop and the report covers what ran.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var meter *serverMeter
	if len(cfg.ServerPIDs) > 0 {
		meter = newServerMeter(cfg.ServerPIDs)
		if err := meter.check(); err != nil {
			return nil, err
		}
	}
	r, err := newRun(cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer r.startProgress()()

	rep := &Report{
		Addrs:   cfg.Addrs,
		Framing: framingName(cfg),
		Clients: cfg.Clients,
		Senders: cfg.Senders,
		Size:    cfg.Size,
		Warmup:  cfg.Warmup,
	}
	if cfg.Rate > 0 {
		rep.Rate = cfg.Rate
	} else {
		rep.Window = cfg.Window
	}
	rep.Setup, err = r.setup(ctx)
	if err != nil {
		return nil, err
	}

	// Senders. The window is set before they start: receivers read it.
	t0 := r.now()
	r.from.Store(t0 + int64(cfg.Warmup))
	r.to.Store(t0 + int64(cfg.Warmup+cfg.Duration))
	stop := make(chan struct{})
	var self driverMeter
	if cfg.Warmup == 0 {
		self.begin()
		if meter != nil {
			meter.start()
		}
	}
	r.skipEmpty.Store(shortReadDrains)
	for _, c := range r.senders {
		r.senderGroup.Add(1)
		go func() {
			defer r.senderGroup.Done()
			if cfg.Rate > 0 {
				// Stagger the senders over one interval.
				off := float64(c.own) / float64(cfg.Senders) * float64(time.Second) / cfg.Rate
				c.openLoop(stop, t0+int64(off), cfg.Rate)
			} else {
				c.closedLoop(stop, cfg.Window)
			}
		}()
	}

	// Warm-up, then the measured window.
	from, to := r.window()
	ok := true
	if cfg.Warmup > 0 {
		r.setPhase(PhaseWarmup, cfg.Warmup)
		ok = r.sleepUntil(ctx, from)
		if ok {
			self.begin()
			if meter != nil {
				meter.start()
			}
		}
	}
	if ok {
		r.setPhase(PhaseMeasure, cfg.Duration)
		ok = r.sleepUntil(ctx, to)
	}
	if !ok { // interrupted: the window ends now
		rep.Interrupted = true
		to = min(r.now(), to)
		from = min(from, to)
		r.from.Store(from)
		r.to.Store(to)
	}
	close(stop)
	if from < to {
		self.stop()
		if meter != nil {
			meter.stop()
		}
	}
	rep.Duration = time.Duration(to - from)

	// Drain: wait for the senders, then for every message to arrive.
	drainStart := time.Now()
	deadline := drainStart.Add(cfg.DrainTimeout)
	r.setPhase(PhaseDrain, 0)
	r.stopSkipping()
	if !waitGroupUntil(&r.senderGroup, deadline) {
		// A sender is blocked writing to a server that stopped reading.
		for _, c := range r.senders {
			c.conn.SetWriteDeadline(time.Now())
		}
		r.senderGroup.Wait()
	}
	sent := make([]uint64, cfg.Senders)
	for j, c := range r.senders {
		sent[j] = uint64(c.sent.Load())
		rep.Sent += int64(sent[j])
	}
	r.expected.Store(rep.Sent)
	rep.DrainTimedOut = !r.drain(rep.Sent, deadline)
	rep.Drain = time.Since(drainStart)
	r.close()

	// Count.
	total := r.lat.merged()
	perServer := make([]int64, len(cfg.Addrs)) // deliveries in the window
	var reads, empty int64                     // in the window
	for _, c := range r.clients {
		perServer[c.server] += c.inWindow
		c.chk.errs.Lost += c.chk.missing(sent)
		rep.Errors.add(c.chk.errs)
		rep.Delivered += c.accounted
		rep.Deliveries += c.inWindow
		reads += c.windowReads
		empty += c.windowEmpty
		rep.Accepted += c.ownWindow
		err := c.readErr
		if err == nil {
			err = c.sendErr
		}
		if err != nil {
			rep.Errors.Disconnected++
			if rep.Disconnect == "" {
				rep.Disconnect = fmt.Sprintf("client %d: %v", c.id, err)
			}
		}
	}
	if secs := rep.Duration.Seconds(); secs > 0 {
		rep.AcceptedPerSec = float64(rep.Accepted) / secs
		rep.DeliveriesPerSec = float64(rep.Deliveries) / secs
	}
	rep.Latency = summarize(total)
	if from < to {
		rep.Driver = self.usage(rep.Duration, rep.Deliveries, reads, empty)
	}
	if meter != nil {
		rep.Server, rep.PerServer = meter.usage(rep.Duration, perServer)
	}
	return rep, nil
}

// framingName names what cfg's clients speak: their framing, or
// "websocket".
func framingName(cfg Config) string {
	if cfg.WebSocket {
		return "websocket"
	}
	return cfg.Framing.String()
}

// drain waits until every receiver still connected has accounted for
// expected messages, or until deadline; it reports the first.
func (r *run) drain(expected int64, deadline time.Time) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	i := 0 // receivers before i are done
	for {
		for i < len(r.clients) {
			c := r.clients[i]
			if c.progress.Load() < expected && !c.done.Load() {
				break
			}
			i++
		}
		if i == len(r.clients) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// waitGroupUntil waits for wg until deadline, and reports whether it is done.
func waitGroupUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean()),
		P50:   time.Duration(h.ValueAtQuantile(50)),
		P90:   time.Duration(h.ValueAtQuantile(90)),
		P99:   time.Duration(h.ValueAtQuantile(99)),
		P999:  time.Duration(h.ValueAtQuantile(99.9)),
		Max:   time.Duration(h.Max()),
	}
}
