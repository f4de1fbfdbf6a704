package load

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// serveEnv, set in a child process of the tests, makes it a chat server
// (of that framing) that prints its address and shuts down on SIGTERM:
// the sigterm case's target.
const serveEnv = "CPORT_LOAD_TEST_SERVE"

func TestMain(m *testing.M) {
	if f := os.Getenv(serveEnv); f != "" {
		os.Exit(serveUntilSignal(f))
	}
	os.Exit(m.Run())
}

// serveUntilSignal is the child's chat server, as cport serve runs one.
func serveUntilSignal(framing string) int {
	var f chat.Framing
	if err := f.UnmarshalText([]byte(framing)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := chat.New(chat.Config{Addr: "127.0.0.1:0", Framing: f})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	go func() {
		<-signals
		srv.Shutdown(context.Background())
	}()
	fmt.Println(srv.Addr().String())
	if err := srv.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// shortAbuse is a configuration of one case in a few seconds: few
// clients, short phases.
func shortAbuse(addr string, f chat.Framing, name string) AbuseConfig {
	return AbuseConfig{
		Addr:            addr,
		Framing:         f,
		Cases:           []string{name},
		Good:            4,
		Baseline:        300 * time.Millisecond,
		Abuse:           400 * time.Millisecond,
		Recovery:        300 * time.Millisecond,
		Wait:            20 * time.Second,
		Settle:          5 * time.Second,
		HalfOpen:        2,
		ChurnTotal:      300,
		ChurnConcurrent: 20,
		OneAddress:      200,
		ServerPID:       os.Getpid(),
	}
}

// runCase runs one case of cfg and returns its report.
func runCase(t *testing.T, cfg AbuseConfig) *AbuseCaseReport {
	t.Helper()
	rep, err := Abuse(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Cases) != 1 {
		t.Fatalf("%d cases reported; want 1", len(rep.Cases))
	}
	c := &rep.Cases[0]
	t.Logf("%s: phases %+v\nabuser %+v\ngood %+v, foreign %d, ratio %.2f, failures %q, error %q",
		c.Case, c.Phases, c.Abuser, c.Good, c.Foreign, c.Ratio, c.Failures, c.Err)
	if c.Err != "" {
		t.Fatalf("case %s could not run: %s", c.Case, c.Err)
	}
	return c
}

// checkPhases checks what every case measures: three phases (two after a
// SIGTERM), the good clients' deliveries, the server's usage and the
// kernel's counts.
func checkPhases(t *testing.T, c *AbuseCaseReport) {
	t.Helper()
	want := []string{PhaseBaseline, PhaseAbuse, PhaseRecovery}
	if c.Case == caseSigterm {
		want = want[:2]
	}
	if len(c.Phases) != len(want) {
		t.Fatalf("phases %+v; want %v", c.Phases, want)
	}
	for i, p := range c.Phases {
		if p.Name != want[i] || p.Duration <= 0 {
			t.Errorf("phase %d: %+v; want %s, with a duration", i, p, want[i])
		}
		if c.Case != caseSigterm && p.Server == nil || p.Server != nil && (p.Server.RSS <= 0 || p.ServerPeak == nil || p.ServerPeak.RSS < p.Server.RSS) {
			t.Errorf("phase %s: server %+v, peak %+v; want both, the peak at least the end", p.Name, p.Server, p.ServerPeak)
		}
		if runtime.GOOS == "linux" && (p.TCP == nil || p.TCP.InUse <= 0 || p.TCPPeak == nil || p.TCPPeak.InUse < p.TCP.InUse) {
			t.Errorf("phase %s: TCP %+v, peak %+v; want the kernel's counts", p.Name, p.TCP, p.TCPPeak)
		}
	}
	if b := c.Phases[0]; b.Deliveries == 0 || b.DeliveriesPerSec <= 0 || b.Sent == 0 {
		t.Errorf("baseline %+v: want deliveries", b)
	}
}

// checkGood checks that the good clients got everything.
func checkGood(t *testing.T, c *AbuseCaseReport) {
	t.Helper()
	if c.Good.Total() > 0 {
		t.Errorf("good clients: %+v (%s); want no error", c.Good, c.Disconnect)
	}
	for _, p := range c.Phases {
		if p.Lost != 0 || p.Errors != 0 || p.Disconnected != 0 {
			t.Errorf("phase %+v: want nothing lost, no error, no disconnect", p)
		}
	}
}

// The flooder and the zero-length flood: the abuser's bytes and messages
// are counted, and so are the good clients' deliveries in every phase.
func TestAbuseFlood(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		for _, name := range []string{caseFlooder, caseZeroFlood} {
			t.Run(f.String()+"/"+name, func(t *testing.T) {
				srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: f})
				c := runCase(t, shortAbuse(srv.Addr().String(), f, name))
				checkPhases(t, c)
				a := c.Abuser
				if a.Conns != 1 || a.Written <= 0 || a.WrittenPerSec <= 0 || a.Messages <= 0 {
					t.Errorf("abuser %+v; want one connection that wrote messages", a)
				}
				if c.Phase(PhaseAbuse).Deliveries == 0 && c.Ratio != 0 {
					t.Errorf("ratio %v with no deliveries during the abuse", c.Ratio)
				}
			})
		}
	}
}

// Oversize and garbage input: the server closes the abuser, the good
// clients lose nothing, and the case passes.
func TestAbuseBadInput(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		for _, name := range []string{caseOversize, caseGarbage} {
			t.Run(f.String()+"/"+name, func(t *testing.T) {
				srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: f})
				c := runCase(t, shortAbuse(srv.Addr().String(), f, name))
				checkPhases(t, c)
				checkGood(t, c)
				a := c.Abuser
				if a.Conns != 1 || a.Closed != 1 || a.Open != 0 || a.How == "" || a.Written <= 0 {
					t.Errorf("abuser %+v; want one, closed by the server", a)
				}
				if c.Failed() {
					t.Errorf("case failed: %q", c.Failures)
				}
			})
		}
	}
}

// The drip: the tool reports how long the server took to close it (the
// server's idle timeout stands in for a message deadline here).
func TestAbuseDrip(t *testing.T) {
	const idle = 2 * time.Second
	srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: chat.Frame, IdleTimeout: idle})
	cfg := shortAbuse(srv.Addr().String(), chat.Frame, caseDrip)
	cfg.DripInterval = 5 * idle // one byte, then silence: the idle timeout closes it
	c := runCase(t, cfg)
	checkPhases(t, c)
	a := c.Abuser
	if a.Closed != 1 || a.FirstClose < idle || a.FirstClose > cfg.Wait {
		t.Errorf("abuser %+v; want it closed by the server after %v", a, idle)
	}
	if ab := c.Phase(PhaseAbuse); ab.Duration < a.FirstClose {
		t.Errorf("abuse phase of %v; want it to last until the drip was closed, %v", ab.Duration, a.FirstClose)
	}
}

// Stalled readers: the tool sees the server evict them (a small send
// queue makes it quick) and reads the orphan sockets around it.
func TestAbuseStalled(t *testing.T) {
	srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: chat.Frame, MaxMessage: 16 << 10, SendQueue: 64 << 10})
	c := runCase(t, shortAbuse(srv.Addr().String(), chat.Frame, caseStalled))
	checkPhases(t, c)
	a := c.Abuser
	if runtime.GOOS != "linux" {
		if !a.Unknown {
			t.Errorf("abuser %+v; want its state unknown off Linux", a)
		}
		return
	}
	if a.Conns != 2 || a.Closed != 2 || a.Unknown || a.Received <= 0 {
		t.Errorf("abuser %+v; want 2 stalled clients, evicted after receiving", a)
	}
	if a.OrphansBefore == nil || a.OrphansAfter == nil {
		t.Errorf("orphans %v before, %v after; want both read", a.OrphansBefore, a.OrphansAfter)
	}
	if st := srv.Stats(); st.SlowConsumers < 2 {
		t.Errorf("server stats %+v; want the 2 stalled clients evicted as slow consumers", st)
	}
}

// Half-open clients: they connect and are counted; the abuse phase waits
// at most Wait for the server to close them.
func TestAbuseHalfOpen(t *testing.T) {
	srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: chat.Line})
	cfg := shortAbuse(srv.Addr().String(), chat.Line, caseHalfOpen)
	cfg.Wait = 500 * time.Millisecond
	c := runCase(t, cfg)
	checkPhases(t, c)
	a := c.Abuser
	if a.Conns != 2 || a.Written <= 0 || a.Closed+a.Open != 2 {
		t.Errorf("abuser %+v; want 2 clients that wrote half a message", a)
	}
}

// The churn: every churning connection gets its echo, and the good
// clients set the churn's messages aside without counting them as errors.
func TestAbuseChurn(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: f})
			c := runCase(t, shortAbuse(srv.Addr().String(), f, caseChurn))
			checkPhases(t, c)
			checkGood(t, c)
			if ch := c.Churn; ch == nil || ch.Done != 300 || ch.Failures != 0 || c.Abuser.Conns != 300 {
				t.Fatalf("churn %+v, abuser %+v; want 300 connections done", ch, c.Abuser)
			}
			if c.Foreign < 300 {
				t.Errorf("%d foreign messages; want the 300 of the churn, at least, set aside", c.Foreign)
			}
			if c.Failed() {
				t.Errorf("case failed: %q", c.Failures)
			}
		})
	}
}

// One address: the tool counts the connections the server refused at
// once (MaxConns stands in for a per-address limit here) apart from those
// it accepted.
func TestAbuseOneAddress(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("closes of connections that do not read are seen on Linux")
	}
	const good, room = 4, 50
	srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Framing: chat.Frame, MaxConns: good + room})
	c := runCase(t, shortAbuse(srv.Addr().String(), chat.Frame, caseOneAddress))
	checkPhases(t, c)
	a := c.Abuser
	if a.Conns != 200 || a.DialFailed != 0 || a.Silent != 200-room || a.Closed+a.Open != 200 {
		t.Errorf("abuser %+v; want 200 connections, %d refused at once", a, 200-room)
	}
}

// SIGTERM: the server exits, and every message it accepted reached every
// good client.
func TestAbuseSigterm(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the sigterm case runs on Linux")
	}
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), serveEnv+"="+f.String())
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			addr, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				t.Fatalf("the server's address: %v", err)
			}
			cfg := shortAbuse(strings.TrimSpace(addr), f, caseSigterm)
			cfg.ServerPID, cfg.AllowSignal = cmd.Process.Pid, true
			c := runCase(t, cfg)
			checkPhases(t, c)
			s := c.Abuser.Signal
			if s == nil || !s.Exited || s.Exit <= 0 || s.Accepted <= 0 || s.Err != "" {
				t.Fatalf("signal %+v; want the server exited, having accepted messages", s)
			}
			if c.Good.Lost != 0 || c.Good.Duplicated+c.Good.Reordered+c.Good.Corrupted != 0 || c.Failed() {
				t.Errorf("good %+v, failures %q; want every accepted message delivered", c.Good, c.Failures)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("the server: %v", err)
			}
		})
	}
}

// Configurations that cannot run are refused; sigterm runs only when
// allowed, and all skips it otherwise.
func TestAbuseConfig(t *testing.T) {
	for _, cfg := range []AbuseConfig{
		{Cases: []string{"nosuch"}},
		{Cases: []string{caseSigterm}, ServerPID: os.Getpid()},
		{Cases: []string{caseSigterm}, AllowSignal: true},
		{Good: -1},
		{Framing: chat.Raw + 100},
		{DripSize: 10},
	} {
		if _, err := Abuse(context.Background(), cfg); err == nil {
			t.Errorf("config %+v ran", cfg)
		}
	}
	specs, err := AbuseConfig{}.withDefaults().check()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != len(AbuseCases()) || specs[len(specs)-1].name != caseSigterm {
		t.Errorf("all: %d cases; want %d, sigterm last", len(specs), len(AbuseCases()))
	}
	// all skips sigterm unless allowed.
	ar := &abuseRun{cfg: AbuseConfig{ServerPID: os.Getpid()}.withDefaults()}
	if c := ar.runCase(context.Background(), specs[len(specs)-1]); c.Skipped == "" || c.Failed() || len(c.Phases) != 0 {
		t.Errorf("sigterm not allowed: %+v; want it skipped, not failed", c)
	}
}
