package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// wsaeConnRefused is Windows' own number for a refused connection
// (WSAECONNREFUSED), which its syscall.ECONNREFUSED does not match.
const wsaeConnRefused = syscall.Errno(10061)

// dialTimeout bounds one connect; a full accept queue makes the kernel
// retry a SYN after 1s, 3s…
const dialTimeout = 15 * time.Second

// dialers is how many connects may be in progress at once.
const dialers = 32

// sources hands out the local address of each connection. Against IPv4
// loopback servers, once the clients outgrow one source address's ephemeral
// ports (or connect reports that other processes took them), it binds
// connections to 127.0.0.2, 127.0.0.3, …; otherwise it leaves the choice to
// the kernel.
type sources struct {
	mu      sync.Mutex
	enabled bool // the servers are on IPv4 loopback: other sources exist
	bind    bool // bind each connection to addr(idx)
	perAddr int  // connections one source address holds
	idx     int  // the source address in use: 127.0.0.1 + idx
	used    int  // connections handed addr(idx)
	top     int  // highest idx handed out
}

func newSources(servers []string, clients int) *sources {
	s := &sources{perAddr: ephemeralPorts() - 1000}
	s.enabled = len(servers) > 0 && !slices.ContainsFunc(servers, func(a string) bool { return !loopback4(a) })
	s.bind = s.enabled && clients > s.perAddr
	return s
}

// loopback4 reports whether the address host:port is on IPv4 loopback.
func loopback4(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Is4() && ip.IsLoopback()
}

// ephemeralPorts returns the size of the kernel's ephemeral port range.
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &lo, &hi); err == nil && hi > lo {
			return hi - lo + 1
		}
	}
	return 60999 - 32768 + 1 // Linux's default
}

// pick returns the local address of the next connection (nil: any) and its
// index, for exhausted.
func (s *sources) pick() (*net.TCPAddr, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bind {
		return nil, s.idx
	}
	if s.used >= s.perAddr {
		s.idx++
		s.used = 0
	}
	s.used++
	s.top = max(s.top, s.idx)
	a := netip.AddrFrom4([4]byte{127, byte((1 + s.idx) >> 16), byte((1 + s.idx) >> 8), byte(1 + s.idx)})
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)), s.idx
}

// exhausted reports that source idx has no port left: later connections
// move on to the next address. It returns false when there is no other.
func (s *sources) exhausted(idx int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.enabled || idx >= 1<<16 {
		return false
	}
	if idx == s.idx {
		s.idx++
		s.used = 0
		s.bind = true
	}
	return true
}

// count returns how many source addresses were used.
func (s *sources) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.top + 1
}

// dial opens one connection to server addr, moving to another source
// address when the ports of one run out.
func (r *run) dial(ctx context.Context, addr string) (net.Conn, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		local, idx := r.src.pick()
		d := net.Dialer{Timeout: dialTimeout}
		if local != nil {
			d.LocalAddr = local
		}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil && r.cfg.TLS != nil {
			return r.handshake(ctx, conn, addr)
		}
		if err == nil {
			return conn, nil
		}
		if (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE)) &&
			attempt < 64 && r.src.exhausted(idx) {
			continue
		}
		if Refused(err) && time.Since(start) < RefusedWait {
			select {
			case <-time.After(refusedRetry):
				continue
			case <-ctx.Done():
			}
		}
		return nil, explainDial(err)
	}
}

// handshake runs a TLS client's handshake on conn, within dialTimeout.
func (r *run) handshake(ctx context.Context, conn net.Conn, addr string) (net.Conn, error) {
	cfg := r.cfg.TLS
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(conn, cfg)
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// RefusedWait is how long a dial tries again a server that refuses it:
// one started a moment before (`cport serve & cport load`) may not listen
// yet. refusedRetry is the pause between two tries.
const (
	RefusedWait  = 10 * time.Second
	refusedRetry = 50 * time.Millisecond
)

// Refused reports whether err is a refused connection (ECONNREFUSED, or
// Windows' WSAECONNREFUSED).
func Refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, wsaeConnRefused)
}

// explainDial adds advice to the errors a load run typically meets.
func explainDial(err error) error {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return fmt.Errorf("%w: the open-files limit is reached; split the clients over several load processes", err)
	case Refused(err):
		return fmt.Errorf("%w: is the server running? (tried for %v)", err, RefusedWait)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%w: no ephemeral port left on any source address", err)
	}
	return err
}

// connect opens the clients at the configured rate, starting each one's
// reader as soon as it is connected. On error it returns the first one;
// the connections already open are closed by the run's cleanup.
func (r *run) connect(ctx context.Context, onConnected func(*client)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := len(r.clients)
	tickets := make(chan int)
	go func() {
		defer close(tickets)
		start := time.Now()
		for i := range n {
			if rate := r.cfg.ConnectRate; rate > 0 {
				due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
						return
					}
				}
			}
			select {
			case tickets <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range min(dialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tickets {
				addr := r.cfg.Addrs[i%len(r.cfg.Addrs)]
				conn, err := r.dial(ctx, addr)
				var ws *wsClient
				if err == nil && r.cfg.WebSocket {
					ws, err = r.upgrade(ctx, conn, addr)
				}
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("load: connecting client %d of %d to %s: %w", i+1, n, addr, err)
						cancel()
					})
					continue
				}
				c := r.newClient(i, conn)
				c.ws = ws
				r.clients[i] = c
				onConnected(c)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
