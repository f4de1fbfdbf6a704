package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The echo scenarios' messages: 1 KiB, as in the published gnet
// benchmarks ("echo"), and 64 bytes, a small request ("echo-small").
const (
	echoSize      = 1024
	echoSmallSize = 64
)

// echoWith returns the echo scenario for messages of size bytes: n
// connections streaming them to each server's echo counterpart (the peers
// with --mode echo, and for cport cportecho, an echo server on the cport
// library with the same engine, since cport serve only relays), as tcpkali
// does in the published gnet benchmarks, but with at most echoWindow
// messages in flight per connection so that no server buffers without
// bound. Each echoed byte is checked. The driver (echoDriver) runs in this
// process.
func echoWith(size int) func(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	pattern := make([]byte, size)
	for i := range pattern {
		pattern[i] = byte('a' + i%26)
	}
	return func(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
		return runEcho(ctx, r, s, n, pattern)
	}
}

func runEcho(ctx context.Context, r *runner, s serverSpec, n int, pattern []byte) (metrics, string, error) {
	return withEchoConns(ctx, s, n, func(p *process, conns []net.Conn) (metrics, string, error) {
		d, err := startEchoDriver(conns, pattern)
		if err != nil {
			return nil, "", err
		}
		sleepCtx(ctx, r.cfg.Warmup)
		c0, s0 := d.echoes(), time.Now()
		p0, err0 := sampleProc(p.pid)
		sleepCtx(ctx, r.cfg.Duration)
		c1, elapsed := d.echoes(), time.Since(s0)
		p1, err1 := sampleProc(p.pid)
		d.close()
		problem := ""
		if m := d.failed.Load(); m != nil {
			problem = *m
		}
		if err0 != nil || err1 != nil {
			return nil, problem, fmt.Errorf("sampling the server: %v %v", err0, err1)
		}
		echoes := float64(c1-c0) / elapsed.Seconds()
		m := metrics{
			mEchoes:     echoes,
			mEchoMiB:    echoes * float64(len(pattern)) / (1 << 20),
			mCPUPercent: 100 * float64(p1.cpu-p0.cpu) / float64(elapsed),
			mRSS:        float64(p1.rss),
		}
		if c1 > c0 {
			m[mCPUDelivery] = float64(p1.cpu-p0.cpu) / float64(c1-c0)
		}
		return m, problem, nil
	})
}

// withEchoConns runs f with n connections to s's echo server, closed
// when f returns.
func withEchoConns(ctx context.Context, s serverSpec, n int, f func(p *process, conns []net.Conn) (metrics, string, error)) (metrics, string, error) {
	return withServer(ctx, s, true, func(p *process) (metrics, string, error) {
		conns, err := dialAll(ctx, p.addr, n)
		if err != nil {
			return nil, "", err
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		return f(p, conns)
	})
}

// echoWindow is how many messages a connection of the echo driver keeps in
// flight.
const echoWindow = 4

// dialAll opens n connections to addr, 32 at a time.
func dialAll(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	var d net.Dialer
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("connecting: %v", *e)
	}
	return conns, nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
