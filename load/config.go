package load

import (
	"errors"
	"fmt"
	"math"
	"time"

	"cport.dev/cport/chat"
)

// Config configures a Run. The zero value runs the defaults below, closed
// loop, without warm-up.
type Config struct {
	// Addr is the server's TCP address. Default "127.0.0.1:25000".
	Addr string
	// Framing is the server's framing: chat.Frame or chat.Line. The zero
	// value (chat.Raw, which has no message boundaries to check) means
	// chat.Frame.
	Framing chat.Framing
	// Clients is how many connections to open. Default 100.
	Clients int
	// Senders is how many of the clients send. Default 10 (at most Clients).
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
	// ServerPID, when positive, is the server's process id: its CPU time,
	// memory and threads are read from /proc and reported.
	ServerPID int
	// Progress, when set, is called every ProgressInterval from another
	// goroutine, and not after Run returns.
	Progress func(Progress)
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
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
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Framing == chat.Raw {
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
	switch {
	case c.Clients < 1:
		return fmt.Errorf("load: %d clients: want at least 1", c.Clients)
	case c.Senders < 1 || c.Senders > c.Clients:
		return fmt.Errorf("load: %d senders: want 1 to %d (the clients)", c.Senders, c.Clients)
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
