package main

import (
	"context"
	"fmt"
	"time"
)

// Fan-out and latency parameters (the issue's).
const (
	fanoutSenders = 10
	messageSize   = 64
	fanoutWindow  = 8 // messages in flight per sender, closed loop
	latencyPoint  = 1000
)

// runFanout: n clients, 10 of them sending 64-byte frames in a closed loop;
// every message reaches every client.
func runFanout(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	return withServer(ctx, s, false, func(p *process) (metrics, string, error) {
		rep, err := r.runLoad(ctx, loadArgs{
			addr: p.addr, clients: n, senders: fanoutSenders, size: messageSize, window: fanoutWindow,
			warmup: r.cfg.Warmup, duration: r.cfg.Duration, serverPID: p.pid,
		})
		if err != nil {
			return nil, "", err
		}
		return loadMetrics(rep), problems(rep), nil
	})
}

// runLatency: 1,000 clients, 10 senders on a fixed schedule (open loop) at
// half the rate Go net sustains in the closed loop, so that latency is
// measured below saturation and without coordinated omission.
func runLatency(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	rate, err := r.latencyRate(ctx)
	if err != nil {
		return nil, "", err
	}
	return withServer(ctx, s, false, func(p *process) (metrics, string, error) {
		rep, err := r.runLoad(ctx, loadArgs{
			addr: p.addr, clients: n, senders: fanoutSenders, size: messageSize,
			rate: rate / fanoutSenders, warmup: r.cfg.Warmup, duration: r.cfg.Duration, serverPID: p.pid,
		})
		if err != nil {
			return nil, "", err
		}
		m := loadMetrics(rep)
		m[mRate] = rate
		return m, problems(rep), nil
	})
}

// loadMetrics extracts the metrics of a cport load report.
func loadMetrics(rep *runReport) metrics {
	m := metrics{
		mDeliveries: rep.DeliveriesPerSec,
		mAccepted:   rep.AcceptedPerSec,
		mP50:        float64(rep.Latency.P50),
		mP99:        float64(rep.Latency.P99),
		mP999:       float64(rep.Latency.P999),
	}
	if s := rep.Server; s != nil && s.Err == "" {
		m[mCPUDelivery] = s.CPUPerDelivery
		m[mCPUPercent] = s.CPUPercent
		m[mRSS] = float64(s.RSS)
	}
	if d := rep.Driver; d != nil && d.Err == "" {
		m[mDriverCPU] = d.CPUPerDelivery
	}
	return m
}

// latencyRate returns the open-loop rate of the latency scenario, in
// messages per second over all senders: half what Go net accepted in the
// closed loop at 1,000 clients, from the fan-out results or, when those
// were not run, from a calibration run.
func (r *runner) latencyRate(ctx context.Context) (float64, error) {
	if r.rate > 0 {
		return r.rate, nil
	}
	var sustained float64
	if res := r.find("fanout", baseline, latencyPoint); res != nil && res.median[mAccepted] > 0 {
		sustained = res.median[mAccepted]
	} else {
		progress("latency: calibrating on Go net (closed loop, %d clients)", latencyPoint)
		net := serverSpec{name: baseline, relay: func(addr string) []string {
			return []string{r.bins.netpeer, "--framing", "frame", "--addr", addr}
		}}
		m, _, err := runFanout(ctx, r, net, latencyPoint)
		if err != nil {
			return 0, fmt.Errorf("calibrating the latency rate on Go net: %v", err)
		}
		sustained = m[mAccepted]
	}
	if sustained <= 0 {
		return 0, fmt.Errorf("calibrating the latency rate: Go net accepted nothing")
	}
	r.rate = sustained / 2
	r.note("latency: open-loop rate %s messages/s in all (%s per sender), half of the %s that Go net sustains in the closed loop at %d clients",
		fmtRate(r.rate), fmtRate(r.rate/fanoutSenders), fmtRate(sustained), latencyPoint)
	return r.rate, nil
}

// settle is the pause between the moment every connection is open and the
// start of an idle measurement: registration probes still in flight.
func (r *runner) settle() time.Duration {
	if r.cfg.Quick {
		return 500 * time.Millisecond
	}
	return 2 * time.Second
}
