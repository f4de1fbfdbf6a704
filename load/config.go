package load

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"time"

	"cport.dev/cport/chat"
)

// Config configures a Run. The zero value runs the defaults below, closed
// loop, without warm-up.
type Config struct {
	// Addrs are the TCP addresses of the servers to drive: one server, or
	// several servers of one cluster (chat's cluster mode), which must
	// then behave as one chat room. Client i connects to Addrs[i %
	// len(Addrs)], and so does sender j (see Senders). Default
	// {"127.0.0.1:25000"}.
	Addrs []string
	// Framing is the server's framing: chat.Frame or chat.Line. The zero
	// value (chat.Raw, which has no message boundaries to check) means
	// chat.Frame.
	Framing chat.Framing
	// Clients is how many connections to open. Default 100.
	Clients int
	// Senders is how many of the clients send. Default 10 (at most
	// Clients). Sender j is a client of server j % len(Addrs): every server
	// has senders, so there must be at least len(Addrs).
	Senders int
	// Size is the size of every message in bytes: the payload of a frame,
	// or a line with its '\n'. Default 64; at least MinSize(Framing).
	Size int
	// Window is, in closed loop, how many of its own messages a sender
	// keeps in flight at most. Default 8.
	Window int
	// Rate, when positive, runs an open loop: each sender sends Rate
	// messages per second on a fixed schedule, and Window is ignored.
	Rate float64
	// Duration is how long the measured window lasts. Default 10s.
	Duration time.Duration
	// Warmup is how long the senders run before the measured window
	// opens. Zero means none.
	Warmup time.Duration
	// ConnectRate is how many connections are opened per second. Default
	// 2000; negative means as fast as possible.
	ConnectRate float64
	// RegisterTimeout bounds the registration barrier (see the package
	// documentation). Default 30s.
	RegisterTimeout time.Duration
	// DrainTimeout bounds the wait, after the senders stop, for every
	// message to reach every receiver. Default 10s.
	DrainTimeout time.Duration
	// ServerPIDs, when set, are the servers' process ids, one per address
	// in the order of Addrs: their CPU time, memory and threads are read
	// from the operating system and reported.
	ServerPIDs []int
	// Progress, when set, is called every ProgressInterval from another
	// goroutine, and not after Run returns.
	Progress func(Progress)
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
	// TLS, when set, makes every client speak TLS to the servers (a chat
	// server with Config.TLS): each connects, then handshakes, within the
	// connect's timeout. Its ServerName defaults to each address's host.
	TLS *tls.Config
	// WebSocket, when set, makes every client a WebSocket client (RFC
	// 6455) of the servers' gateway (chat's Config.WSAddr): Addrs are then
	// the servers' WebSocket addresses. Each client connects, asks GET
	// /ws to upgrade, and sends every message as one masked binary frame;
	// it reads the server's frames, answers its pings, and takes a
	// fragmented message whole. A message is a WebSocket message's
	// payload, Size bytes, as with frame framing; Framing is ignored.
	// With TLS, the clients speak wss: the TLS handshake, then the upgrade.
	WebSocket bool
}

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:25000"
	DefaultClients         = 100
	DefaultSenders         = 10
	DefaultSize            = 64
	DefaultWindow          = 8
	DefaultDuration        = 10 * time.Second
	DefaultConnectRate     = 2000
	DefaultRegisterTimeout = 30 * time.Second
	DefaultDrainTimeout    = 10 * time.Second
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if len(c.Addrs) == 0 {
		c.Addrs = []string{DefaultAddr}
	}
	if c.Framing == chat.Raw || c.WebSocket {
		c.Framing = chat.Frame
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.Senders == 0 {
		c.Senders = min(DefaultSenders, c.Clients)
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.ConnectRate == 0 {
		c.ConnectRate = DefaultConnectRate
	}
	if c.RegisterTimeout <= 0 {
		c.RegisterTimeout = DefaultRegisterTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	return c
}

// check reports a configuration that cannot run, defaults applied.
func (c Config) check() error {
	if err := CheckAddrs(c.Addrs); err != nil {
		return err
	}
	servers := len(c.Addrs)
	switch {
	case c.Clients < 1:
		return fmt.Errorf("load: %d clients: want at least 1", c.Clients)
	case c.Clients < servers:
		return fmt.Errorf("load: %d clients for %d servers: want at least one client per server", c.Clients, servers)
	case c.Senders < 1 || c.Senders > c.Clients:
		return fmt.Errorf("load: %d senders: want 1 to %d (the clients)", c.Senders, c.Clients)
	case c.Senders < servers:
		return fmt.Errorf("load: %d senders for %d servers: want at least one sender per server", c.Senders, servers)
	case len(c.ServerPIDs) > 0 && len(c.ServerPIDs) != servers:
		return fmt.Errorf("load: %d server pids for %d server addresses: want one pid per address, in the same order", len(c.ServerPIDs), servers)
	case slices.ContainsFunc(c.ServerPIDs, func(pid int) bool { return pid <= 0 }):
		return fmt.Errorf("load: server pids %v: want positive process ids", c.ServerPIDs)
	case c.Window < 1:
		return fmt.Errorf("load: window %d: want at least 1", c.Window)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("load: rate %v: want a positive number of messages per second per sender, or 0 for a closed loop", c.Rate)
	case c.Duration < 0 || c.Warmup < 0:
		return errors.New("load: negative duration or warm-up")
	case c.Warmup+c.Duration > 24*time.Hour:
		return errors.New("load: warm-up and duration above 24 hours")
	}
	return checkFiles(c.Clients)
}

// CheckAddrs reports an address list that Run cannot drive (see
// Config.Addrs): an empty one, an address that is not host:port, or one
// listed twice.
func CheckAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("load: no server address")
	}
	for i, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil || a == "" {
			return fmt.Errorf("load: server address %d of %d, %q: want host:port", i+1, len(addrs), a)
		}
		if j := slices.Index(addrs[:i], a); j >= 0 {
			return fmt.Errorf("load: server address %q is listed twice (%d and %d of %d)", a, j+1, i+1, len(addrs))
		}
	}
	return nil
}

// reservedFiles are the file descriptors kept for what is not a client:
// the standard streams, the runtime's poller, /proc files. A server in the
// same process, as in tests, is not accounted for.
const reservedFiles = 64

// checkFiles reports whether the open-files limit allows n sockets.
func checkFiles(n int) error {
	limit, ok := openFilesLimit()
	if !ok || limit > math.MaxInt32 { // RLIM_INFINITY included
		return nil // no limit we can read: let connect say so
	}
	room := int(limit) - reservedFiles
	if n <= room {
		return nil
	}
	return &LimitError{Clients: n, Limit: int(limit), Max: max(room, 0)}
}

// LimitError reports more clients than one process's open-files limit
// allows.
type LimitError struct {
	Clients int // asked for
	Limit   int // RLIMIT_NOFILE
	Max     int // clients one process can hold
}

func (e *LimitError) Error() string {
	procs := (e.Clients + e.Max - 1) / max(e.Max, 1)
	return fmt.Sprintf("load: %d clients need %d sockets, but the open-files limit (RLIMIT_NOFILE) is %d: "+
		"one load process holds at most %d clients; split them over %d or more processes (for instance %d clients each)",
		e.Clients, e.Clients, e.Limit, e.Max, procs, (e.Clients+procs-1)/procs)
}
