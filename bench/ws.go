package main

import (
	"context"
	"strings"
)

// wsPoint is the WebSocket scenario's client count (issue 20's).
const wsPoint = 1000

// wsServers returns the servers of the WebSocket scenario: a cport serve
// with TCP clients (the reference), the same server's WebSocket gateway
// (--ws-addr), and wspeer. cport's engine is that of the run's first cport
// server (uring, else epoll, else portable, as this machine offers), or
// the server's own choice when the run has none (--servers without cport).
func (r *runner) wsServers() []serverSpec {
	var specs []serverSpec
	backend := "auto"
	for _, s := range r.servers {
		if be, ok := strings.CutPrefix(s.name, "cport/"); ok {
			specs = append(specs, s)
			backend = be
			break
		}
	}
	specs = append(specs,
		serverSpec{name: "cport/" + backend + " ws", ws: true, relay: func(addr string) []string {
			tcp, err := freeAddr()
			if err != nil {
				tcp = "127.0.0.1:0"
			}
			return []string{r.bins.cport, "serve", "--backend", backend, "--framing", "frame",
				"--addr", tcp, "--ws-addr", addr, "--log-level", "warn"}
		}},
		serverSpec{name: "wspeer", ws: true, relay: func(addr string) []string {
			return []string{r.bins.wspeer, "--addr", addr}
		}},
	)
	return specs
}

// runWS: the fan-out scenario's load (10 senders, 64-byte messages, 8 in
// flight each) with n clients, WebSocket clients when the server is a
// WebSocket one.
func runWS(ctx context.Context, r *runner, s serverSpec, n int) (metrics, string, error) {
	return withServer(ctx, s, false, func(p *process) (metrics, string, error) {
		rep, err := r.runLoad(ctx, loadArgs{
			addr: p.addr, ws: s.ws, clients: n, senders: fanoutSenders, size: messageSize, window: fanoutWindow,
			warmup: r.cfg.Warmup, duration: r.cfg.Duration, serverPID: p.pid,
		})
		if err != nil {
			return nil, "", err
		}
		return loadMetrics(rep), problems(rep), nil
	})
}
