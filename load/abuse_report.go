package load

import (
	"fmt"
	"time"
)

// AbuseReport is the outcome of Abuse.
type AbuseReport struct {
	Addr      string            `json:"addr"`
	Framing   string            `json:"framing"`
	Good      int               `json:"good"`   // good clients, every one a sender
	Size      int               `json:"size"`   // of their messages
	Window    int               `json:"window"` // their messages in flight, each
	ServerPID int               `json:"server_pid,omitempty"`
	Cases     []AbuseCaseReport `json:"cases"`
	// Interrupted: the context ended the run; the cases not run are absent.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Failed reports whether a case failed its criterion or could not run.
func (r *AbuseReport) Failed() bool {
	for i := range r.Cases {
		if r.Cases[i].Failed() {
			return true
		}
	}
	return false
}

// AbuseCaseReport is the outcome of one abuse case.
type AbuseCaseReport struct {
	Case      string `json:"case"`
	What      string `json:"what"`      // what the abusers do
	Criterion string `json:"criterion"` // what must hold for the case to pass
	// Skipped says why the case did not run (sigterm without AllowSignal).
	Skipped string `json:"skipped,omitempty"`
	// Err says why the case could not run to its end (the good clients
	// could not connect, say); it then fails.
	Err         string `json:"error,omitempty"`
	Interrupted bool   `json:"interrupted,omitempty"`

	// Settle is how long the case waited, before it started, for the
	// server to let go of the previous case's connections.
	Settle time.Duration `json:"settle_ns"`

	// Phases are baseline, abuse and recovery (sigterm has no recovery).
	Phases []AbusePhase `json:"phases"`
	// Ratio is the good clients' deliveries per second during the abuse
	// over those of the baseline.
	Ratio float64 `json:"ratio"`

	// Good counts what went wrong for the good clients over the whole
	// case. After a SIGTERM, lost counts the messages the server accepted
	// (some client received them) that a client still connected then
	// never received.
	Good Errors `json:"good"`
	// Disconnect is why the first good client that lost its connection
	// lost it.
	Disconnect string `json:"disconnect,omitempty"`
	// Foreign counts the abusers' messages that the server relayed to the
	// good clients (which set them aside, unchecked).
	Foreign int64 `json:"foreign"`

	Abuser AbuserReport `json:"abuser"`
	// ServerErr says why the server's usage could not be read, when it
	// could not (after a SIGTERM, it is gone).
	ServerErr string       `json:"server_error,omitempty"`
	Churn     *ChurnReport `json:"churn,omitempty"` // the churn case's own report

	// Failures are the criteria not met: empty when the case passed.
	Failures []string `json:"failures,omitempty"`
}

// Failed reports whether the case failed its criterion or could not run.
func (c *AbuseCaseReport) Failed() bool { return c.Err != "" || len(c.Failures) > 0 }

// Phase returns the phase named name, or nil.
func (c *AbuseCaseReport) Phase(name string) *AbusePhase {
	for i := range c.Phases {
		if c.Phases[i].Name == name {
			return &c.Phases[i]
		}
	}
	return nil
}

// Names of the phases of an abuse case.
const (
	PhaseBaseline = "baseline"
	PhaseAbuse    = "abuse"
	PhaseRecovery = "recovery"
)

// AbusePhase is what the good clients got, and what the server and the
// kernel held, during one phase of a case.
type AbusePhase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	// Deliveries counts the messages the good clients received in the
	// phase (duplicates excepted).
	Deliveries       int64   `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Sent             int64   `json:"sent"` // messages the good clients sent in the phase
	// Lost counts the messages sent in the phase that a good client never
	// received, each time.
	Lost int64 `json:"lost"`
	// Errors counts the messages received in the phase that were
	// duplicated, reordered or corrupted.
	Errors int64 `json:"errors"`
	// Disconnected counts the good clients whose connection ended in the
	// phase: the server closed them.
	Disconnected int `json:"disconnected"`

	// The server's process (with AbuseConfig.ServerPID) and the kernel's
	// TCP sockets (Linux), at the phase's end and at their highest in it,
	// sampled every 100ms.
	Server     *ProcUsage `json:"server,omitempty"`
	ServerPeak *ProcUsage `json:"server_peak,omitempty"`
	TCP        *Sockstat  `json:"tcp,omitempty"`
	TCPPeak    *Sockstat  `json:"tcp_peak,omitempty"`
}

// Sockstat is what /proc/net/sockstat says of the host's TCP sockets (in
// the tool's network namespace).
type Sockstat struct {
	InUse    int   `json:"inuse"`     // sockets in use, IPv4 and IPv6
	Orphan   int   `json:"orphan"`    // closed by their process, still held by the kernel (FIN-WAIT, unsent data)
	TimeWait int   `json:"tw"`        // in TIME-WAIT
	Alloc    int   `json:"alloc"`     // allocated, orphans and TIME-WAIT included
	Mem      int64 `json:"mem_bytes"` // the kernel's TCP buffer memory
}

func (s Sockstat) max(o Sockstat) Sockstat {
	return Sockstat{InUse: max(s.InUse, o.InUse), Orphan: max(s.Orphan, o.Orphan), TimeWait: max(s.TimeWait, o.TimeWait),
		Alloc: max(s.Alloc, o.Alloc), Mem: max(s.Mem, o.Mem)}
}

// AbuserReport is what happened to the abusers of a case.
type AbuserReport struct {
	Conns          int    `json:"conns"`       // connections the abusers opened
	DialFailed     int    `json:"dial_failed"` // connects that failed
	FirstDialError string `json:"first_dial_error,omitempty"`
	// Closed counts the abusers the server closed, Reset those of them it
	// reset (RST), Silent those of them that had received nothing before
	// (refused at once: a per-address limit, say). Open counts the others,
	// which the tool closed at the end. Unknown says whether closes could
	// not be seen (a connection that does not read is watched through the
	// kernel's TCP_INFO, on Linux only).
	Closed  int  `json:"closed"`
	Reset   int  `json:"reset"`
	Silent  int  `json:"silent"`
	Open    int  `json:"open"`
	Unknown bool `json:"unknown,omitempty"`
	// FirstClose and LastClose are how long after connecting (for the
	// drip: after its first byte) the server closed the first and last
	// abusers it closed; How is what the first one saw.
	FirstClose time.Duration `json:"first_close_ns"`
	LastClose  time.Duration `json:"last_close_ns"`
	How        string        `json:"how,omitempty"`
	// Written counts the bytes the abusers got written (accepted by their
	// sockets), WrittenPerSec the rate while they were active; Messages
	// the flooders' messages among them.
	Written       int64   `json:"written"`
	WrittenPerSec float64 `json:"written_per_sec"`
	Messages      int64   `json:"messages,omitempty"`
	Received      int64   `json:"received"` // bytes the abusers read (or, not reading, that arrived)

	// Stalled: the kernel's orphan sockets when the stalled clients
	// connected and at the end of the recovery.
	OrphansBefore *int `json:"orphans_before,omitempty"`
	OrphansAfter  *int `json:"orphans_after,omitempty"`

	// Signal is the sigterm case's.
	Signal *SignalReport `json:"signal,omitempty"`
}

// SignalReport is what a SIGTERM did.
type SignalReport struct {
	Exited bool          `json:"exited"`  // the server's process exited
	Exit   time.Duration `json:"exit_ns"` // from the signal to its exit
	// Accepted counts the messages the server accepted before it closed:
	// those some client received.
	Accepted int64  `json:"accepted"`
	Err      string `json:"error,omitempty"`
}

// judge fills c.Failures from the case's criterion, its throughput ratio
// included only with speed.
func (c *AbuseCaseReport) judge(spec *abuseSpec, speed bool) {
	fail := func(format string, args ...any) { c.Failures = append(c.Failures, fmt.Sprintf(format, args...)) }
	g := c.Good
	if spec.name == caseSigterm {
		if g.Lost > 0 {
			fail("%d accepted messages were not delivered before the server closed", g.Lost)
		}
		if s := c.Abuser.Signal; s == nil || !s.Exited {
			fail("the server did not exit")
		}
		if b := c.Phase(PhaseBaseline); b != nil && b.Disconnected > 0 {
			fail("%d good clients were disconnected before the signal", b.Disconnected)
		}
	} else {
		if g.Disconnected > 0 {
			fail("%d good clients were disconnected", g.Disconnected)
		}
		if g.Lost > 0 {
			fail("%d messages were lost", g.Lost)
		}
		if n := g.Duplicated + g.Reordered + g.Corrupted; n > 0 {
			fail("%d messages were duplicated, reordered or corrupted", n)
		}
	}
	if b := c.Phase(PhaseBaseline); b == nil || b.Deliveries == 0 {
		fail("no deliveries in the baseline")
	}
	if speed && spec.minRatio > 0 && c.Ratio < spec.minRatio {
		fail("throughput during the abuse %.2f of the baseline, below %.2f", c.Ratio, spec.minRatio)
	}
	a := &c.Abuser
	if spec.mustClose {
		switch {
		case a.Unknown:
			fail("whether the server closed the abusers cannot be seen here")
		case a.Open > 0 || a.Conns == 0:
			fail("the server closed %d of the %d abusers", a.Closed, a.Conns)
		}
	}
	if b, e := a.OrphansBefore, a.OrphansAfter; b != nil && e != nil && *e > *b {
		fail("orphan sockets grew from %d to %d", *b, *e)
	}
}
