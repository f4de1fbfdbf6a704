package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/chat"
)

func runServe(fs *flag.FlagSet, args []string) error {
	var cfg chat.Config
	fs.StringVar(&cfg.Addr, "addr", chat.DefaultAddr, "TCP `address` to listen on")
	fs.StringVar(&cfg.Backend, "backend", "auto", "cport engine: auto or one of "+strings.Join(cport.Backends(), ", "))
	fs.IntVar(&cfg.Workers, "workers", 0, "worker goroutines dequeuing completions, and the port's concurrency cap (0: GOMAXPROCS)")
	fs.TextVar(&cfg.Framing, "framing", chat.Raw, "how messages are cut: raw (one read), line (up to \\n) or frame (4-byte big-endian length)")
	fs.IntVar(&cfg.MaxMessage, "max-message", chat.DefaultMaxMessage, "largest message in `bytes` (frame payload; line with its \\n; raw read size)")
	fs.BoolVar(&cfg.NoEcho, "no-echo", false, "do not send a client's messages back to it")
	fs.IntVar(&cfg.SendQueue, "send-queue", chat.DefaultSendQueue, "`bytes` queued to one client before it is disconnected as a slow consumer")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "connections held at most; more are closed at once (0: no cap)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "disconnect a client silent for this long (0: never)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", chat.DefaultShutdownTimeout, "on SIGINT/SIGTERM, how long to go on delivering accepted messages")
	halfClose := nonNegDuration(chat.DefaultHalfCloseTimeout)
	fs.Var(&halfClose, "half-close-timeout", "how long a client stays in the room, still receiving, after it ends its stream (nc -N): a `duration` (0: it is closed once what was queued to it is written)")
	halfCloseMax := fs.Int("half-close-max", chat.DefaultHalfCloseMax, "clients staying after their end of stream at most: one more closes the one that stayed longest, gracefully (0: no cap)")
	fs.StringVar(&cfg.NATS, "nats", "", "cluster mode: NATS server `URL`s, comma-separated; servers of one --cluster relay each other's messages")
	fs.StringVar(&cfg.Cluster, "cluster", chat.DefaultCluster, "cluster `name`: NATS subject cport.NAME.relay, JetStream stream CPORT_NAME")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials `file`")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", "", "PEM `file` of the CAs of the NATS servers' certificates")
	fs.DurationVar(&cfg.NATSMaxAge, "nats-max-age", chat.DefaultNATSMaxAge, "how long the stream keeps messages: the longest NATS outage that loses nothing")
	fs.Int64Var(&cfg.NATSMaxBytes, "nats-max-bytes", chat.DefaultNATSMaxBytes, "stream size bound in `bytes`")
	fs.IntVar(&cfg.NATSReplicas, "nats-replicas", 1, "stream replicas (up to the JetStream servers of the NATS cluster)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *halfCloseMax < 0 {
		fmt.Fprintln(fs.Output(), "--half-close-max must be 0 (no cap) or more")
		return errUsage
	}
	cfg.HalfCloseMax = *halfCloseMax
	if cfg.HalfCloseMax == 0 {
		cfg.HalfCloseMax = -1 // chat.Config's zero is the default
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.ReleaseMemory = true // the process is the server's: give memory back once a crowd has left
	cfg.HalfCloseTimeout = time.Duration(halfClose)
	if cfg.HalfCloseTimeout == 0 {
		cfg.HalfCloseTimeout = -1 // chat.Config's zero is the default
	}

	srv, err := chat.New(cfg)
	if err != nil {
		return err
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String())
		go srv.Shutdown(context.Background())
		sig = <-signals
		log.Warn("second signal: exiting now", "signal", sig.String())
		os.Exit(1)
	}()
	if err := srv.Serve(); err != nil {
		return err
	}
	st := srv.Stats()
	log.Info("server stopped", "accepted", st.Accepted, "relayed", st.Relayed, "deliveries", st.Deliveries,
		"slow_consumers", st.SlowConsumers, "bad_input", st.BadInput, "idle_timeouts", st.IdleTimeouts, "refused", st.Refused, "half_close_evicted", st.HalfCloseEvicted)
	if cfg.NATS != "" {
		bs := srv.BusStats()
		log.Info("bus stopped", "published", bs.Published, "batches", bs.Batches, "received", bs.Received, "delivered", bs.Delivered,
			"dropped", bs.Dropped, "duplicates", bs.Duplicate, "missed", bs.Missed, "refused", bs.Refused, "reconnects", bs.Reconnect)
	}
	return nil
}

// newLogger returns the logger the flags ask for, writing to standard error.
func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// nonNegDuration is a flag.Value of a duration that may not be negative.
type nonNegDuration time.Duration

func (d *nonNegDuration) String() string { return time.Duration(*d).String() }

func (d *nonNegDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New("want a duration such as 2s or 500ms")
	case v < 0:
		return errors.New("want 0 or more")
	}
	*d = nonNegDuration(v)
	return nil
}
