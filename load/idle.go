package load

import (
	"context"
	"fmt"
	"time"
)

// Idle connects cfg.Clients clients, waits until the servers have
// registered them all, holds them without sending for cfg.Duration, and
// reports what the server (cfg.ServerPIDs, which may hold one pid only)
// used: memory per connection, CPU time while idle, threads. It uses the
// fields Addrs, Framing, Clients, Size (of the registration probe),
// Duration, ConnectRate, RegisterTimeout, ServerPIDs, Progress and
// ProgressInterval of cfg.
func Idle(ctx context.Context, cfg Config) (*IdleReport, error) {
	cfg.Senders = max(1, len(cfg.Addrs)) // none sends; one per server is the least a run is built for
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if len(cfg.ServerPIDs) > 1 {
		return nil, fmt.Errorf("load: idle measures one server: %d server pids given", len(cfg.ServerPIDs))
	}
	r, err := newRun(cfg)
	if err != nil {
		return nil, err
	}
	r.idle = true
	r.bufSize = max(512, 2*r.codec.wire) // only probes arrive
	defer r.close()
	defer r.startProgress()()

	rep := &IdleReport{Addrs: cfg.Addrs, Clients: cfg.Clients}
	var srv *IdleServer
	var before procSample
	pid := 0
	if len(cfg.ServerPIDs) == 1 {
		pid = cfg.ServerPIDs[0]
		srv = &IdleServer{PID: pid}
		rep.Server = srv
		if before, err = sampleProc(pid); err != nil {
			return nil, fmt.Errorf("load: reading the server's usage: %w", err)
		}
		srv.RSSBefore, srv.ThreadsBefore = before.rss, before.threads
	}
	rep.Setup, err = r.setup(ctx)
	if err != nil {
		return nil, err
	}

	r.setPhase(PhaseIdle, cfg.Duration)
	var start procSample
	if srv != nil {
		start, err = sampleProc(pid)
	}
	t0 := r.now()
	rep.Interrupted = !r.sleepUntil(ctx, t0+int64(cfg.Duration))
	rep.Duration = time.Duration(r.now() - t0)
	if srv != nil && err == nil {
		var end procSample
		if end, err = sampleProc(pid); err == nil {
			srv.RSSHeld, srv.ThreadsAfter = end.rss, end.threads
			srv.RSSPerConn = float64(end.rss-before.rss) / float64(cfg.Clients)
			srv.User, srv.System = end.user-start.user, end.system-start.system
			srv.CPUPercent = 100 * float64(srv.User+srv.System) / float64(rep.Duration)
		}
	}
	if err != nil {
		srv.Err = err.Error()
	}
	r.close()
	for _, c := range r.clients {
		if c.readErr != nil {
			rep.Disconnected++
			if rep.Disconnect == "" {
				rep.Disconnect = fmt.Sprintf("client %d: %v", c.id, c.readErr)
			}
		}
	}
	return rep, nil
}
