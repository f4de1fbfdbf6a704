package load

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport/chat"
)

// Names of the abuse cases.
const (
	caseFlooder    = "flooder"
	caseZeroFlood  = "zero-flood"
	caseStalled    = "stalled"
	caseDrip       = "drip"
	caseOversize   = "oversize"
	caseGarbage    = "garbage"
	caseHalfOpen   = "half-open"
	caseChurn      = "churn"
	caseOneAddress = "one-address"
	caseSigterm    = "sigterm"
)

// An abuseSpec describes one abuse case.
type abuseSpec struct {
	name string
	what func(cfg *AbuseConfig) string
	// The criterion, beyond the good clients' (none disconnected, nothing
	// lost, duplicated, reordered or corrupted; for sigterm, nothing
	// accepted lost):
	minRatio  float64 // throughput during the abuse over the baseline's, at least
	mustClose bool    // the server closes every abuser
	extra     string  // more, in words
	// noRecovery: the case has no recovery phase (the server is gone).
	noRecovery bool
	start      func(ac *abuseCase, ctx context.Context) (abuseAction, error)
}

// criterion says in words what the case must show to pass.
func (s *abuseSpec) criterion() string {
	var parts []string
	if s.name == caseSigterm {
		parts = append(parts, "every message the server accepted reaches every good client still connected, and the server exits")
	} else {
		parts = append(parts, "no good client disconnected, no message lost, duplicated, reordered or corrupted")
	}
	if s.minRatio > 0 {
		parts = append(parts, fmt.Sprintf("throughput during the abuse at least %.1f of the baseline", s.minRatio))
	}
	if s.mustClose {
		parts = append(parts, "the server closes every abuser")
	}
	if s.extra != "" {
		parts = append(parts, s.extra)
	}
	return strings.Join(parts, "; ")
}

// abuseSpecs returns the cases, in the order they run.
func abuseSpecs() []*abuseSpec {
	return []*abuseSpec{
		{
			name: caseFlooder,
			what: func(c *AbuseConfig) string {
				read := "reading what it gets"
				if c.FloodNoRead {
					read = "reading nothing"
				}
				return fmt.Sprintf("one client sends %d-byte messages as fast as it can, %s", MinSize(c.Framing), read)
			},
			minRatio: 0.5,
			start:    startFlooder,
		},
		{
			name: caseZeroFlood,
			what: func(c *AbuseConfig) string {
				if c.Framing == chat.Line {
					return "one client sends empty lines as fast as it can, reading what it gets"
				}
				return "one client sends zero-length frames as fast as it can, reading what it gets"
			},
			minRatio: 0.5,
			start:    startZeroFlood,
		},
		{
			name: caseStalled,
			what: func(c *AbuseConfig) string {
				return fmt.Sprintf("%d more clients (SO_RCVBUF %d) join and never read; kept until the end of the recovery", c.Stalled, abuseStalledRcvBuf)
			},
			minRatio:  0.9,
			mustClose: true,
			extra:     "no more orphan sockets at the end of the recovery than when they joined",
			start:     startStalled,
		},
		{
			name: caseDrip,
			what: func(c *AbuseConfig) string {
				return fmt.Sprintf("one client starts a %d-byte message and sends one more byte every %v, reading what it gets",
					c.DripSize, c.DripInterval)
			},
			mustClose: true,
			extra:     "(it should be within the server's message timeout: see how long it took)",
			start:     startDrip,
		},
		{
			name: caseOversize,
			what: func(c *AbuseConfig) string {
				if c.Framing == chat.Line {
					return fmt.Sprintf("one client sends a line of up to %d bytes, reading what it gets", c.Oversize)
				}
				return fmt.Sprintf("one client sends a frame header announcing %d bytes, then its payload, reading what it gets", min(c.Oversize, math.MaxUint32))
			},
			mustClose: true,
			start:     startOversize,
		},
		{
			name: caseGarbage,
			what: func(c *AbuseConfig) string {
				if c.Framing == chat.Line {
					return "one client sends random bytes with no newline (a line longer than any limit), reading what it gets"
				}
				return "one client sends random bytes, the first an invalid frame length (2 GiB or more), reading what it gets"
			},
			mustClose: true,
			start:     startGarbage,
		},
		{
			name: caseHalfOpen,
			what: func(c *AbuseConfig) string {
				return fmt.Sprintf("%d clients (SO_RCVBUF %d) send half a message, then neither read nor write, their sockets left open "+
					"(a simulation: a vanished peer would not even acknowledge)", c.HalfOpen, abuseStalledRcvBuf)
			},
			start: startHalfOpen,
		},
		{
			name: caseChurn,
			what: func(c *AbuseConfig) string {
				return fmt.Sprintf("%d connections open, send a %d-byte message, read until its echo and close, %d at once",
					c.ChurnTotal, c.Size, c.ChurnConcurrent)
			},
			start: startChurn,
		},
		{
			name: caseOneAddress,
			what: func(c *AbuseConfig) string {
				from := "the good clients' address"
				if loopback4(c.Addr) {
					from = oneAddressSource.String()
				}
				return fmt.Sprintf("%d connections from one address (%s, SO_RCVBUF %d) are held open through the abuse, reading nothing, then reset",
					c.OneAddress, from, abuseStalledRcvBuf)
			},
			start: startOneAddress,
		},
		{
			name: caseSigterm,
			what: func(c *AbuseConfig) string {
				return fmt.Sprintf("the tool sends SIGTERM to the server (pid %d) while the good clients chat", c.ServerPID)
			},
			noRecovery: true,
			start:      startSigterm,
		},
	}
}

// probeCodec returns the codec of the abusers' messages: probes of the
// smallest size.
func (ac *abuseCase) probeCodec() *codec {
	cd, err := newCodec(ac.cfg.Framing, MinSize(ac.cfg.Framing))
	if err != nil {
		panic(err) // the framing was checked
	}
	return cd
}

// A groupAction is a case whose abusers are connections (abusers).
type groupAction struct {
	g           *abusers
	untilClosed bool        // the abuse phase waits for the server to close them all
	keep        bool        // they stay until the end of the case, not of the abuse phase
	polled      bool        // they do not read: their closes are seen through the kernel
	ready       atomic.Bool // their connects are done
	cancel      context.CancelFunc
	fill        func(rep *AbuseCaseReport) // more of the report, if set
	port        int                        // when positive, done waits for the server's accept queue on it to empty
}

func (a *groupAction) done() bool {
	return a.ready.Load() && (!a.untilClosed || a.g.closedAll() || a.g.blind.Load()) &&
		(a.port <= 0 || acceptQueued(a.port) <= 0)
}

// stopAll stops the abusers, once their last states are known.
func (a *groupAction) stopAll() {
	if a.cancel != nil {
		a.cancel()
	}
	if a.polled {
		a.g.poll()
	}
	a.g.close()
}

func (a *groupAction) endAbuse() {
	if !a.keep {
		a.stopAll()
	}
}

func (a *groupAction) finish(rep *AbuseCaseReport) {
	a.stopAll()
	a.g.report(&rep.Abuser)
	if a.fill != nil {
		a.fill(rep)
	}
}

// startOne opens one abuser that reads what it gets (unless noRead: then
// its closes are seen through the kernel), and runs send on it.
func (ac *abuseCase) startOne(ctx context.Context, noRead, untilClosed bool, send func(g *abusers, a *abuser)) (*groupAction, error) {
	g := newAbusers()
	a, err := g.dial(ctx, ac.cfg.Addr, nil, 0)
	if err != nil {
		return nil, err
	}
	act := &groupAction{g: g, untilClosed: untilClosed, polled: noRead}
	if noRead {
		g.watch(abuseStatePollEvery)
	} else {
		g.read(a)
	}
	g.goroutine(func() { send(g, a) })
	act.ready.Store(true)
	return act, nil
}

// repeat writes b on a until the abusers stop or a write fails.
func repeat(g *abusers, a *abuser, b []byte) {
	for !g.stopped() && g.write(a, b) {
	}
}

func startFlooder(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	cd := ac.probeCodec()
	var buf []byte
	for i := 0; len(buf)+cd.wire <= abuseWriteChunk; i++ {
		buf = cd.append(buf, header{kind: kindProbe, sender: abuseSender, seq: uint64(i)})
	}
	act, err := ac.startOne(ctx, ac.cfg.FloodNoRead, false, func(g *abusers, a *abuser) { repeat(g, a, buf) })
	if err != nil {
		return nil, err
	}
	act.fill = func(rep *AbuseCaseReport) { rep.Abuser.Messages = rep.Abuser.Written / int64(cd.wire) }
	return act, nil
}

func startZeroFlood(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	buf := make([]byte, abuseWriteChunk) // zero-length frames: 4 zero bytes each
	per := int64(4)
	if ac.cfg.Framing == chat.Line {
		buf, per = bytes.Repeat([]byte{'\n'}, abuseWriteChunk), 1
	}
	act, err := ac.startOne(ctx, false, false, func(g *abusers, a *abuser) { repeat(g, a, buf) })
	if err != nil {
		return nil, err
	}
	act.fill = func(rep *AbuseCaseReport) { rep.Abuser.Messages = rep.Abuser.Written / per }
	return act, nil
}

// dripMessage returns the message the drip starts, as it goes on the wire
// but for a line's '\n', which is never sent: the header of a probe from
// abuseSender (ignored by any checker, should it ever arrive), padded to
// size.
func (ac *abuseCase) dripMessage(size int) []byte {
	cd := ac.probeCodec()
	probe := cd.append(nil, header{kind: kindProbe, sender: abuseSender})
	var msg []byte
	if ac.cfg.Framing == chat.Frame {
		msg = binary.BigEndian.AppendUint32(msg, uint32(size))
		probe = probe[4:]
	} else {
		size-- // the '\n'
	}
	msg = append(msg, probe[:headerLen]...)
	return append(msg, bytes.Repeat([]byte{'x'}, size-headerLen)...)
}

func startDrip(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	msg := ac.dripMessage(ac.cfg.DripSize)
	first := 1
	if ac.cfg.Framing == chat.Frame {
		first = 5 // the frame header and one byte
	}
	every := ac.cfg.DripInterval
	return ac.startOne(ctx, false, true, func(g *abusers, a *abuser) {
		if !g.write(a, msg[:first]) {
			return
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := first; i < len(msg); i++ {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			if !g.write(a, msg[i:i+1]) {
				return
			}
		}
	})
}

func startOversize(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	total := ac.cfg.Oversize
	return ac.startOne(ctx, false, true, func(g *abusers, a *abuser) {
		if ac.cfg.Framing == chat.Frame {
			if !g.write(a, binary.BigEndian.AppendUint32(nil, uint32(min(total, math.MaxUint32)))) {
				return
			}
		}
		chunk := bytes.Repeat([]byte{'x'}, abuseWriteChunk)
		for sent := int64(0); sent < total && !g.stopped(); sent += int64(len(chunk)) {
			if !g.write(a, chunk[:min(int64(len(chunk)), total-sent)]) {
				return
			}
		}
	})
}

func startGarbage(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	chunk := make([]byte, abuseWriteChunk)
	line := ac.cfg.Framing == chat.Line
	total := ac.cfg.Oversize
	return ac.startOne(ctx, false, true, func(g *abusers, a *abuser) {
		for sent := int64(0); sent < total && !g.stopped(); sent += int64(len(chunk)) {
			for i := 0; i < len(chunk); i += 8 {
				binary.LittleEndian.PutUint64(chunk[i:], rng.Uint64())
			}
			if line {
				for i, b := range chunk {
					if b == '\n' {
						chunk[i] = 0
					}
				}
			} else if sent == 0 {
				chunk[0] |= 0x80 // a length of 2 GiB or more
			}
			if !g.write(a, chunk[:min(int64(len(chunk)), total-sent)]) {
				return
			}
		}
	})
}

// startSilent connects n clients with small receive buffers that never
// read, each first writing first if set; their closes are watched through
// the kernel.
func (ac *abuseCase) startSilent(ctx context.Context, n int, local *net.TCPAddr, first []byte, act *groupAction) {
	g := act.g
	ctx, act.cancel = context.WithCancel(ctx)
	act.polled = true
	g.watch(abuseStatePollEvery)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(dialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				a, err := g.dial(ctx, ac.cfg.Addr, local, abuseStalledRcvBuf)
				if err != nil {
					continue
				}
				if first != nil {
					g.write(a, first)
				}
			}
		}()
	}
	g.goroutine(func() {
		wg.Wait()
		act.ready.Store(true)
	})
}

func startStalled(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	act := &groupAction{g: newAbusers(), untilClosed: true, keep: true}
	var before *int
	if s := ac.lastTCP(); s != nil {
		before = &s.Orphan
	}
	ac.startSilent(ctx, ac.cfg.Stalled, nil, nil, act)
	act.fill = func(rep *AbuseCaseReport) {
		rep.Abuser.OrphansBefore = before
		if s := ac.lastTCP(); s != nil {
			rep.Abuser.OrphansAfter = &s.Orphan
		}
	}
	return act, nil
}

func startHalfOpen(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	cd := ac.probeCodec()
	msg := cd.append(nil, header{kind: kindProbe, sender: abuseSender})
	half := msg[:len(msg)/2]
	act := &groupAction{g: newAbusers(), untilClosed: true}
	ac.startSilent(ctx, ac.cfg.HalfOpen, nil, half, act)
	return act, nil
}

// oneAddressSource is the source address of the one-address case against
// an IPv4 loopback server: not the good clients' (127.0.0.1), so that a
// per-address limit meant for it spares them.
var oneAddressSource = netip.MustParseAddr("127.0.0.2")

func startOneAddress(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	var local *net.TCPAddr
	if loopback4(ac.cfg.Addr) {
		local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(oneAddressSource, 0))
	}
	// Counted once the server has taken every one from its accept queue:
	// those it refuses are closed then.
	act := &groupAction{g: newAbusers(), port: ac.ar.port}
	ac.startSilent(ctx, ac.cfg.OneAddress, local, nil, act)
	return act, nil
}

// A churnAction is the churn case: churn.go's connections at work, with
// sender numbers past the good clients' (the good clients set their
// messages aside as foreign).
type churnAction struct {
	cancel context.CancelFunc
	ended  chan struct{}
	rep    *ChurnReport
	err    error
}

func startChurn(ac *abuseCase, ctx context.Context) (abuseAction, error) {
	offset := ac.cfg.Good
	cfg := ChurnConfig{Addr: ac.cfg.Addr, Framing: ac.cfg.Framing, Total: offset + ac.cfg.ChurnTotal,
		Concurrent: ac.cfg.ChurnConcurrent, Size: ac.cfg.Size}.withDefaults()
	// The churn reads the good clients' messages while it waits for its
	// echoes: its messages have their size.
	r, err := newRun(Config{Addrs: []string{cfg.Addr}, Framing: cfg.Framing, Size: cfg.Size, Clients: 1, Senders: 1}.withDefaults())
	if err != nil {
		return nil, err
	}
	ch := &churn{cfg: cfg, r: r}
	ch.next.Store(int64(offset))
	ch.setPhase(PhaseChurn)
	ctx, cancel := context.WithCancel(ctx)
	act := &churnAction{cancel: cancel, ended: make(chan struct{})}
	go func() {
		defer close(act.ended)
		start := time.Now()
		ch.run(ctx)
		rep := &ChurnReport{Addr: cfg.Addr, Framing: cfg.Framing.String(), Total: ac.cfg.ChurnTotal, Concurrent: cfg.Concurrent,
			Size: cfg.Size, Duration: time.Since(start), Interrupted: ctx.Err() != nil, SourceAddrs: r.src.count(),
			Done: ch.done.Load(), Failures: ch.failures.Load(), Others: ch.others.Load(), FirstFailure: ch.first}
		if rep.Duration > 0 {
			rep.PerSec = float64(rep.Done+rep.Failures) / rep.Duration.Seconds()
		}
		act.rep, act.err = rep, ch.abort
	}()
	return act, nil
}

func (a *churnAction) done() bool {
	select {
	case <-a.ended:
		return true
	default:
		return false
	}
}

func (a *churnAction) endAbuse() {
	a.cancel() // past Wait: what is left of the churn is not run
	<-a.ended
}

func (a *churnAction) finish(rep *AbuseCaseReport) {
	a.endAbuse()
	rep.Churn = a.rep
	if a.err != nil {
		rep.Abuser.DialFailed = 1
		rep.Abuser.FirstDialError = a.err.Error()
	}
	if c := a.rep; c != nil {
		rep.Abuser.Conns = int(c.Done + c.Failures)
	}
}

// A sigtermAction is the sigterm case: the signal sent, the server's
// exit awaited.
type sigtermAction struct {
	ac     *abuseCase
	sent   time.Time
	rep    SignalReport
	exited atomic.Int64 // nanoseconds from the signal to the exit, plus one
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startSigterm(ac *abuseCase, _ context.Context) (abuseAction, error) {
	pid := ac.cfg.ServerPID
	act := &sigtermAction{ac: ac, sent: time.Now(), stop: make(chan struct{})}
	if err := terminate(pid); err != nil {
		return nil, err
	}
	act.wg.Add(1)
	go func() {
		defer act.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			gone, err := processGone(pid)
			if err != nil {
				act.rep.Err = err.Error()
				return
			}
			if gone {
				act.exited.Store(int64(time.Since(act.sent)) + 1)
				return
			}
			select {
			case <-act.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return act, nil
}

func (a *sigtermAction) done() bool {
	if a.exited.Load() == 0 {
		return false
	}
	for _, c := range a.ac.r.clients {
		if !c.done.Load() {
			return false
		}
	}
	return true
}

func (a *sigtermAction) endAbuse() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.wg.Wait()
}

func (a *sigtermAction) finish(rep *AbuseCaseReport) {
	a.endAbuse()
	s := a.rep
	if t := a.exited.Load(); t != 0 {
		s.Exited, s.Exit = true, time.Duration(t-1)
	}
	rep.Abuser.Signal = &s
}
