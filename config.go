package cport

import (
	"log/slog"
	"runtime"
)

// Config configures a Port. The zero value is ready to use: every field's
// zero means its default.
type Config struct {
	// Backend names the engine: "" or "auto" picks the best one this system
	// offers; Backends lists the names of this build.
	Backend string

	// Concurrency caps how many workers run completions at once, like the
	// NumberOfConcurrentThreads of CreateIoCompletionPort: a worker counts as
	// running from the moment its Wait returns until its next Wait (or
	// Close). Default GOMAXPROCS.
	Concurrency int

	// RecvBufferSize is the size of the buffers receives are read into, the
	// most one receive completion can carry. Default 16 KiB.
	RecvBufferSize int

	// Logger receives the port's own diagnostics (the backend chosen, and
	// why). Nil discards them.
	Logger *slog.Logger
}

// Default values of Config.
const (
	DefaultRecvBufferSize = 16 << 10
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Backend == "" {
		c.Backend = "auto"
	}
	if c.Concurrency <= 0 {
		c.Concurrency = runtime.GOMAXPROCS(0)
	}
	if c.RecvBufferSize <= 0 {
		c.RecvBufferSize = DefaultRecvBufferSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
