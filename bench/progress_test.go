package main

import (
	"strings"
	"testing"
	"time"
)

// sixServers are the servers a run here has.
func sixServers() []serverSpec {
	var s []serverSpec
	for _, n := range knownServers {
		s = append(s, serverSpec{name: n})
	}
	return s
}

func TestPlan(t *testing.T) {
	quick, err := parseFlags([]string{"--quick"})
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: quick, limit: 20000, servers: sixServers()}
	p := r.plan()
	// fanout, latency, idle, echo, echo-small, echo-paced: one point each;
	// ws: one point on 3 servers of its own.
	if p.runs != 6*6+3 || p.skipped != 0 {
		t.Errorf("--quick: %d runs, %d skipped; want 39, 0", p.runs, p.skipped)
	}
	// The loads of --quick must leave room for the build in 2 minutes.
	if p.cost < 30*time.Second || p.cost > 80*time.Second {
		t.Errorf("--quick: estimated %s, want 30s to 80s", p.cost)
	}

	full, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	r = &runner{cfg: full, limit: 20000, servers: sixServers()}
	p = r.plan()
	// fanout 3 points, latency 1, idle 1 (50,000 skipped), scale skipped,
	// echo, echo-small, echo-paced: 8 points of 6 servers, 3 repeats; ws
	// one point of 3 servers.
	if p.runs != 8*6*3+3*3 || p.skipped != 2*6*3 {
		t.Errorf("full: %d runs, %d skipped; want 153, 36", p.runs, p.skipped)
	}
	// A full run took about 14 minutes.
	if p.cost < 10*time.Minute || p.cost > 18*time.Minute {
		t.Errorf("full: estimated %s, want 10 to 18 minutes", p.cost)
	}

	r.cfg.Scenarios = []string{"echo-paced"}
	r.cfg.Repeat = 1
	r.servers = r.servers[:2]
	if p := r.plan(); p.runs != 2 || p.cost != 2*(runOverhead+time.Second+5*time.Second+time.Millisecond) {
		t.Errorf("echo-paced on 2 servers: %+v", p)
	}
}

func TestEstimateLeft(t *testing.T) {
	for _, c := range []struct {
		total, done, took, want time.Duration
	}{
		{10 * time.Minute, 0, 0, 10 * time.Minute},                              // nothing done: the plan
		{10 * time.Minute, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute},   // on time
		{10 * time.Minute, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute}, // twice as slow
		{10 * time.Minute, 2 * time.Minute, time.Minute, 4 * time.Minute},       // twice as fast
		{10 * time.Minute, 10 * time.Minute, 12 * time.Minute, 0},               // done
	} {
		if got := estimateLeft(c.total, c.done, c.took); got != c.want {
			t.Errorf("estimateLeft(%s, %s, %s) = %s, want %s", c.total, c.done, c.took, got, c.want)
		}
	}
}

func TestTracker(t *testing.T) {
	tr := &tracker{total: 4, cost: 4 * time.Second}
	tr.begin()
	tail := tr.end(time.Second, 130*time.Second)
	if tr.done != 1 || !strings.HasPrefix(tail, "elapsed 2m10s, about ") || !strings.HasSuffix(tail, " left") {
		t.Errorf("after one run: done %d, %q", tr.done, tail)
	}
}

func TestFmtElapsed(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{45*time.Second + 400*time.Millisecond, "45s"},
		{130 * time.Second, "2m10s"},
		{9 * time.Minute, "9m"},
		{14*time.Minute + 20*time.Second, "14m"},
		{75 * time.Minute, "1h15m"},
	} {
		if got := fmtElapsed(c.d); got != c.want {
			t.Errorf("fmtElapsed(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		done, total int
		want        string
	}{
		{0, 4, "[>       ] 0/4"},
		{2, 4, "[====>   ] 2/4"},
		{4, 4, "[========] 4/4"},
		{9, 4, "[========] 4/4"},
	} {
		if got := progressBar(c.done, c.total, 8); got != c.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}
