package main

import (
	"context"
	"fmt"
	"time"
)

// split divides n clients over as few load processes as the per-process
// cap allows, as evenly as possible.
func split(n, perProcess int) []int {
	k := (n + perProcess - 1) / perProcess
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// holders is a set of cport load idle processes holding connections.
type holders []*idleProc

// hold opens n connections to p with as many cport load idle processes as
// needed (each under the open-files limit; the load tool spreads them over
// 127.0.0.x source addresses when one address runs out of ports), and
// returns once the server holds them all, with the server's sample taken
// before the first connect.
func (r *runner) hold(ctx context.Context, p *process, n int, hold time.Duration) (holders, procSample, error) {
	before, err := quiescent(p.pid)
	if err != nil {
		return nil, before, err
	}
	var hs holders
	for _, c := range split(n, r.cfg.PerProcess) {
		h, err := r.startIdle(p.addr, c, hold)
		if err != nil {
			hs.stop()
			return nil, before, err
		}
		hs = append(hs, h)
	}
	// The server's descriptors tell when every connection is accepted,
	// whatever the number of load processes.
	start := time.Now()
	deadline := start.Add(time.Duration(n)*time.Second/connectRate + 30*time.Second)
	for {
		s, err := sampleProc(p.pid)
		if err != nil {
			hs.stop()
			return nil, before, fmt.Errorf("the server: %v", err)
		}
		if s.fds-before.fds >= n {
			return hs, before, nil
		}
		for _, h := range hs {
			if gone, why := h.exited(); gone {
				hs.stop()
				return nil, before, fmt.Errorf("cport load idle ended early: %s", why)
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			hs.stop()
			return nil, before, fmt.Errorf("the server holds %d of %d connections after %s", s.fds-before.fds, n, time.Since(start).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends every holder and returns what went wrong ("" if nothing): a
// connection the server dropped, a report that did not come.
func (hs holders) stop() string {
	problem := ""
	var dropped int64
	for _, h := range hs {
		rep, err := h.stop()
		switch {
		case err != nil && problem == "":
			problem = err.Error()
		case err == nil && rep.Disconnected > 0:
			dropped += rep.Disconnected
			if problem == "" {
				problem = fmt.Sprintf("the server dropped idle connections (%s)", rep.Disconnect)
			}
		}
	}
	if dropped > 0 {
		problem = fmt.Sprintf("%d dropped: %s", dropped, problem)
	}
	return problem
}

// runIdle: n connections that send nothing; the server's RSS per
// connection and its CPU use while they sit idle.
func runIdle(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	return withServer(ctx, s, false, func(p *process) (metrics, string, error) {
		hs, before, err := r.hold(ctx, p, n, r.cfg.IdleWindow+time.Duration(n)*time.Second/connectRate+2*time.Minute)
		if err != nil {
			return nil, "", err
		}
		time.Sleep(r.settle())
		s1, err1 := sampleProc(p.pid)
		time.Sleep(r.cfg.IdleWindow)
		s2, err2 := sampleProc(p.pid)
		problem := hs.stop()
		if err1 != nil || err2 != nil {
			return nil, problem, fmt.Errorf("sampling the server: %v %v", err1, err2)
		}
		return metrics{
			mRSSPerConn: float64(s2.rss-before.rss) / float64(n),
			mRSS:        float64(s2.rss),
			mIdleCPU:    100 * float64(s2.cpu-s1.cpu) / float64(r.cfg.IdleWindow),
		}, problem, nil
	})
}

// Scale parameters: the checked clients among the n held, and their one
// sender's rate.
const (
	scaleChecked = 1000
	scaleRate    = 2 // broadcasts per second
)

// runScale: n connections held, n - 1,000 by idle holders and 1,000 by a
// checking cport load whose one sender broadcasts twice a second: every
// broadcast reaches all n connections; the checked clients give its
// latency, and the holders report any connection the server dropped.
func runScale(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	return withServer(ctx, s, false, func(p *process) (metrics, string, error) {
		t0 := time.Now()
		hs, before, err := r.hold(ctx, p, n-scaleChecked, r.cfg.Duration+time.Duration(n)*time.Second/connectRate+3*time.Minute)
		if err != nil {
			return nil, "", err
		}
		connect := time.Since(t0)
		rep, err := r.runLoad(ctx, loadArgs{
			addr: p.addr, clients: scaleChecked, senders: 1, size: messageSize,
			rate: scaleRate, duration: r.cfg.Duration, serverPID: p.pid,
		})
		after, _ := sampleProc(p.pid)
		problem := hs.stop()
		if err != nil {
			return nil, problem, err
		}
		if pr := problems(rep); pr != "" && problem == "" {
			problem = pr
		}
		return metrics{
			mBroadcastP99: float64(rep.Latency.P99),
			mP50:          float64(rep.Latency.P50),
			mRSS:          float64(after.rss),
			mRSSPerConn:   float64(after.rss-before.rss) / float64(n),
			mConnectSecs:  connect.Seconds(),
			mDeliveries:   scaleRate * float64(n),
		}, problem, nil
	})
}

// quiescent samples the server once its descriptor count stopped moving
// (the connection that startServer probed it with may still be closing),
// 2 seconds at most.
func quiescent(pid int) (procSample, error) {
	prev, err := sampleProc(pid)
	for range 20 {
		if err != nil {
			return prev, err
		}
		time.Sleep(100 * time.Millisecond)
		var s procSample
		s, err = sampleProc(pid)
		if err == nil && s.fds == prev.fds {
			return s, nil
		}
		prev = s
	}
	return prev, err
}
