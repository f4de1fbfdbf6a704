package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// echoPacedRate is each connection's requests per second in the
// echo-paced scenario: a server at low load, where latency, not
// throughput, tells the models apart.
const echoPacedRate = 200

// runEchoPaced: n connections each sending a 64-byte request every
// 1/echoPacedRate seconds and waiting for its echo before the next, the
// round trip of each timed. Reported: the round trip's p50 and p99, and
// the server's CPU per echo.
func runEchoPaced(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	return withEchoConns(ctx, s, n, func(p *process, conns []net.Conn) (metrics, string, error) {
		var (
			measuring atomic.Bool
			stop      atomic.Bool
			wg        sync.WaitGroup
			failed    atomic.Pointer[string]
			rtts      = make([][]time.Duration, n)
		)
		req := make([]byte, echoSmallSize)
		for i := range req {
			req[i] = byte('a' + i%26)
		}
		for i, c := range conns {
			wg.Go(func() {
				buf := make([]byte, len(req))
				tick := time.NewTicker(time.Second / echoPacedRate)
				defer tick.Stop()
				for !stop.Load() {
					t0 := time.Now()
					c.SetDeadline(t0.Add(10 * time.Second))
					_, err := c.Write(req)
					if err == nil {
						_, err = io.ReadFull(c, buf)
					}
					if err == nil && string(buf) != string(req) {
						err = fmt.Errorf("the echo differs from the request")
					}
					if err != nil {
						if !stop.Load() {
							msg := fmt.Sprintf("connection %d: %v", i, err)
							failed.CompareAndSwap(nil, &msg)
						}
						return
					}
					if measuring.Load() {
						rtts[i] = append(rtts[i], time.Since(t0))
					}
					<-tick.C
				}
			})
		}
		sleepCtx(ctx, r.cfg.Warmup)
		measuring.Store(true)
		p0, err0 := sampleProc(p.pid)
		s0 := time.Now()
		sleepCtx(ctx, r.cfg.Duration)
		measuring.Store(false)
		elapsed := time.Since(s0)
		p1, err1 := sampleProc(p.pid)
		stop.Store(true)
		wg.Wait()
		problem := ""
		if m := failed.Load(); m != nil {
			problem = *m
		}
		if err0 != nil || err1 != nil {
			return nil, problem, fmt.Errorf("sampling the server: %v %v", err0, err1)
		}
		all := slices.Concat(rtts...)
		if len(all) == 0 {
			return nil, problem, fmt.Errorf("no echo in the measured window")
		}
		slices.Sort(all)
		at := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) }
		m := metrics{
			mEchoes:      float64(len(all)) / elapsed.Seconds(),
			mP50:         at(0.50),
			mP99:         at(0.99),
			mCPUPercent:  100 * float64(p1.cpu-p0.cpu) / float64(elapsed),
			mCPUDelivery: float64(p1.cpu-p0.cpu) / float64(len(all)),
			mRSS:         float64(p1.rss),
		}
		return m, problem, nil
	})
}
