package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A runner runs the scenarios over the servers and keeps the results.
type runner struct {
	cfg     Config
	bins    binaries
	limit   int // RLIMIT_NOFILE of every process it starts
	start   time.Time
	servers []serverSpec
	machine machine

	notes   []string
	results []*result
	rate    float64  // the latency scenario's open-loop rate, once known
	track   *tracker // the runs done against the plan
}

// note records a remark for RESULTS.md and prints it.
func (r *runner) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.notes = append(r.notes, s)
	progress("note: %s", s)
}

// Metric names, the keys of result.median.
const (
	mDeliveries   = "deliveries/s"
	mAccepted     = "messages/s"
	mP50          = "p50"
	mP99          = "p99"
	mP999         = "p99.9"
	mCPUDelivery  = "cpu/delivery"
	mDriverCPU    = "driver cpu/delivery"
	mCPUPercent   = "cpu%"
	mRSS          = "rss"
	mRSSPerConn   = "rss/conn"
	mIdleCPU      = "idle cpu%"
	mEchoes       = "echoes/s"
	mEchoMiB      = "MiB/s"
	mRate         = "rate"
	mConnectSecs  = "connect s"
	mBroadcastP99 = "broadcast p99"
)

// metrics is what one run measured.
type metrics map[string]float64

// A result is one point of a scenario on one server: the median of its
// runs.
type result struct {
	scenario string
	server   string
	point    int // clients or connections
	runs     int
	median   metrics
	problem  string // the first thing that went wrong, if any
	skipped  string // why it did not run, if it did not
}

// A scenario is one kind of measurement.
type scenario struct {
	name   string
	points func(r *runner) []int
	// run measures one point once on a server.
	run func(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error)
	// skip, when set, says why a point cannot run here ("" if it can).
	skip func(r *runner, n int) string
	// servers, when set, are the servers the scenario runs on, instead of
	// the runner's.
	servers func(r *runner) []serverSpec
}

// serversOf returns the servers that sc runs on.
func (r *runner) serversOf(sc scenario) []serverSpec {
	if sc.servers != nil {
		return sc.servers(r)
	}
	return r.servers
}

// echoPoints are the echo scenarios' connection counts.
func echoPoints(r *runner) []int {
	if r.cfg.Quick {
		return []int{100}
	}
	return []int{1000}
}

func (r *runner) scenarios() []scenario {
	all := []scenario{
		{name: "fanout", points: func(r *runner) []int {
			if r.cfg.Quick {
				return []int{latencyPoint} // the point the latency scenario's rate comes from
			}
			return []int{100, 1000, 10000}
		}, run: runFanout, skip: (*runner).skipClients},
		{name: "latency", points: func(*runner) []int { return []int{1000} }, run: runLatency, skip: (*runner).skipClients},
		{name: "idle", points: func(r *runner) []int {
			if r.cfg.Quick {
				return []int{2000}
			}
			return []int{10000, 50000}
		}, run: runIdle, skip: (*runner).skipClients},
		{name: "scale", points: func(r *runner) []int {
			if r.cfg.Quick {
				return nil
			}
			return []int{100000}
		}, run: runScale, skip: (*runner).skipClients},
		{name: "echo", points: echoPoints, run: echoWith(echoSize), skip: (*runner).skipClients},
		{name: "echo-small", points: echoPoints, run: echoWith(echoSmallSize), skip: (*runner).skipClients},
		{name: "echo-paced", points: func(*runner) []int { return []int{10} }, run: runEchoPaced, skip: (*runner).skipClients},
		{name: "ws", points: func(*runner) []int { return []int{wsPoint} }, run: runWS, skip: (*runner).skipClients, servers: (*runner).wsServers},
	}
	var out []scenario
	for _, s := range all {
		if contains(r.cfg.Scenarios, s.name) {
			out = append(out, s)
		}
	}
	return out
}

// reservedFDs are the descriptors a server needs besides its connections
// (standard streams, listener, poller, eventfds, rings).
const reservedFDs = 64

// serverCapacity is the most connections a server started here can hold.
func (r *runner) serverCapacity() int { return r.limit - reservedFDs }

// skipClients says why n connections cannot be held here, if they cannot.
func (r *runner) skipClients(n int) string {
	if n > r.serverCapacity() {
		return fmt.Sprintf("server process limited to %d descriptors by RLIMIT_NOFILE (the hard limit here; raise it to run this point): %d connections do not fit",
			r.limit, n)
	}
	return ""
}

// runAll runs every scenario, point, server and repeat, in that order: the
// latency scenario's rate depends on the fan-out results of Go net.
func (r *runner) runAll(ctx context.Context) {
	if r.track == nil {
		p := r.plan()
		r.track = &tracker{total: p.runs, cost: p.cost}
	}
	for _, sc := range r.scenarios() {
		if sc.name == "scale" && len(sc.points(r)) == 0 {
			r.note("scale: not run in --quick mode")
		}
		for _, n := range sc.points(r) {
			if why := sc.skip(r, n); why != "" {
				r.note("%s at %d: skipped: %s", sc.name, n, why)
				for _, s := range r.serversOf(sc) {
					r.results = append(r.results, &result{scenario: sc.name, server: s.name, point: n, skipped: why})
				}
				continue
			}
			cost := r.runCost(sc.name, n)
			for _, s := range r.serversOf(sc) {
				res := &result{scenario: sc.name, server: s.name, point: n}
				var runs []metrics
				for i := range r.cfg.Repeat {
					if ctx.Err() != nil {
						return
					}
					r.track.begin()
					m, problem, err := sc.run(ctx, r, s, n)
					if err != nil {
						problem = err.Error()
					}
					if problem != "" && res.problem == "" {
						res.problem = problem
					}
					if m != nil {
						runs = append(runs, m)
					}
					tail := r.track.end(cost, time.Since(r.start))
					progress("[%d/%d] %s %s %s %s run %d/%d: %s%s; %s", r.track.done, r.track.total,
						sc.name, s.name, fmtCount(n), pointUnit(sc.name), i+1, r.cfg.Repeat,
						summary(sc.name, m), problemSuffix(problem), tail)
					showBar(r.track.done, r.track.total, tail)
				}
				res.runs = len(runs)
				res.median = medians(runs)
				r.results = append(r.results, res)
			}
		}
	}
}

func problemSuffix(p string) string {
	if p == "" {
		return ""
	}
	if len(p) > 300 {
		p = p[:300] + "…"
	}
	return "  PROBLEM: " + p
}

// summary is the progress line's account of one run.
func summary(scenario string, m metrics) string {
	if m == nil {
		return "no result"
	}
	switch scenario {
	case "fanout", "ws":
		return fmt.Sprintf("%s deliveries/s, p99 %s, %s CPU/delivery", fmtRate(m[mDeliveries]), fmtNs(m[mP99]), fmtNs(m[mCPUDelivery]))
	case "latency":
		return fmt.Sprintf("p50 %s p99 %s p99.9 %s at %s msg/s", fmtNs(m[mP50]), fmtNs(m[mP99]), fmtNs(m[mP999]), fmtRate(m[mRate]))
	case "idle":
		return fmt.Sprintf("%s per connection, idle CPU %.2f%%", fmtBytes(m[mRSSPerConn]), m[mIdleCPU])
	case "scale":
		return fmt.Sprintf("broadcast p99 %s, RSS %s", fmtNs(m[mBroadcastP99]), fmtBytes(m[mRSS]))
	case "echo-paced":
		return fmt.Sprintf("%s echoes/s, p50 %s, p99 %s, CPU %.1f%%", fmtRate(m[mEchoes]), nsStr(m[mP50]), nsStr(m[mP99]), m[mCPUPercent])
	case "echo", "echo-small":
		return fmt.Sprintf("%s echoes/s (%.0f MiB/s), CPU %.0f%%", fmtRate(m[mEchoes]), m[mEchoMiB], m[mCPUPercent])
	}
	return ""
}

// medians returns, for each metric, its median over the runs.
func medians(runs []metrics) metrics {
	if len(runs) == 0 {
		return nil
	}
	out := metrics{}
	for k := range runs[0] {
		var v []float64
		for _, m := range runs {
			if x, ok := m[k]; ok {
				v = append(v, x)
			}
		}
		out[k] = median(v)
	}
	return out
}

// median returns the median of v (the mean of the middle two for an even
// count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// find returns the result of scenario on server at point n, or nil.
func (r *runner) find(scenario, server string, n int) *result {
	for _, res := range r.results {
		if res.scenario == scenario && res.server == server && res.point == n {
			return res
		}
	}
	return nil
}

// withServer starts s's relay server, runs f with it, and stops it.
func withServer(ctx context.Context, s serverSpec, echo bool, f func(p *process) (metrics, string, error)) (metrics, string, error) {
	argv := s.relay
	if echo {
		argv = s.echo
	}
	p, err := startServer(ctx, argv)
	if err != nil {
		return nil, "", fmt.Errorf("starting %s: %v", s.name, err)
	}
	m, problem, err := f(p)
	if !p.alive() {
		tail := p.stderr.String()
		if i := strings.LastIndexByte(tail, '\n'); i >= 0 && len(tail)-i > 20 {
			tail = tail[i+1:]
		}
		if problem == "" {
			problem = "the server died: " + tail
		}
	}
	p.stop()
	return m, problem, err
}
