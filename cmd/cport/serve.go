package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/chat"
)

// Ranges of cport serve's flags.
const (
	maxWorkers = 4096
	// maxMessage is far below the frame format's limit (a 4-byte length:
	// 4 GiB): one message is held whole, in every queue it is in.
	maxMessage   = 16 << 20
	minSendQueue = 1 << 10
	maxSendQueue = 1 << 30
	// maxNATSReplicas is JetStream's limit.
	maxNATSReplicas = 5
	minNATSMaxBytes = 1 << 20
)

// serveConfig is cport serve's command line: the server's configuration
// and the operations flags, which are the command's.
type serveConfig struct {
	chat.Config
	MetricsAddr   string        // --metrics-addr: "" for none
	Pprof         bool          // --pprof
	StatsInterval time.Duration // --stats-interval: 0 for none
	PrintConfig   bool          // --print-config
	ConfigFile    string        // --config: "" for none
	TLSCert       string        // --tls-cert: "" for plain TCP
	TLSKey        string        // --tls-key
	WSOrigins     string        // --ws-origin: comma-separated
	// source says where each flag's value came from: fromFlag, fromEnv,
	// fromFile or fromDefault.
	source map[string]string
}

func runServe(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	sc, err := parseServe(fs, args)
	if err != nil {
		return err
	}
	if sc.PrintConfig {
		printConfig(stdout, fs, sc.source, sc.ConfigFile)
		return nil
	}
	cfg := sc.Config
	log := cfg.Logger
	srv, err := chat.New(cfg)
	if err != nil {
		return err
	}
	if sc.MetricsAddr != "" {
		ops, err := startOps(sc.MetricsAddr, opsHandler(srv, sc.Pprof, log), log)
		if err != nil {
			srv.Close()
			return err
		}
		defer ops.close() // once the server has stopped: /readyz says so meanwhile
		log.Info("metrics listening", "addr", ops.Addr().String(), "pprof", sc.Pprof)
	}
	if sc.StatsInterval > 0 {
		stop := make(chan struct{})
		defer close(stop)
		go logStats(log, srv, sc.StatsInterval, stop)
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
		"msgs_in", st.MessagesIn, "msgs_out", st.MessagesOut, "bytes_in", st.BytesIn, "bytes_out", st.BytesOut, "left", st.Left,
		"slow_consumers", st.SlowConsumers, "bad_input", st.BadInput, "idle_timeouts", st.IdleTimeouts, "refused", st.Refused, "half_close_evicted", st.HalfCloseEvicted)
	if cfg.NATS != "" {
		bs := srv.BusStats()
		log.Info("bus stopped", "published", bs.Published, "batches", bs.Batches, "received", bs.Received, "delivered", bs.Delivered,
			"dropped", bs.Dropped, "duplicates", bs.Duplicate, "missed", bs.Missed, "lost_messages", bs.Lost,
			"replayed", bs.Replayed, "refused", bs.Refused, "reconnects", bs.Reconnect)
	}
	return nil
}

// parseServe parses cport serve's command line into the server's
// configuration, its logger included, and the operations flags; on a bad
// value it tells fs's output why and returns errUsage.
func parseServe(fs *flag.FlagSet, args []string) (serveConfig, error) {
	var sc serveConfig
	cfg := &sc.Config
	logFormat, logLevel := defineServeFlags(fs, &sc)
	if err := parse(fs, args); err != nil {
		return sc, err
	}
	source, err := applyEnv(fs)
	if err != nil {
		return sc, err
	}
	if sc.ConfigFile != "" {
		check := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		defineServeFlags(check, new(serveConfig))
		if err := applyFile(fs, check, sc.ConfigFile, source); err != nil {
			return sc, err
		}
	}
	sc.source = source
	if cfg.TLS, err = serverTLS(fs, sc.TLSCert, sc.TLSKey); err != nil {
		return sc, err
	}
	if cfg.WSAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.WSAddr); err != nil {
			return sc, sc.usageErr(fs, "ws-addr", "must be a host:port such as 127.0.0.1:8080, got %s", cfg.WSAddr)
		}
	}
	for o := range strings.SplitSeq(sc.WSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.WSOrigins = append(cfg.WSOrigins, o)
		}
	}
	if len(cfg.WSOrigins) > 0 && cfg.WSAddr == "" {
		return sc, sc.usageErr(fs, "ws-origin", "needs --ws-addr, the gateway's address")
	}
	if sc.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(sc.MetricsAddr); err != nil {
			return sc, sc.usageErr(fs, "metrics-addr", "must be a host:port such as 127.0.0.1:9125, got %s", sc.MetricsAddr)
		}
	}
	if sc.Pprof && sc.MetricsAddr == "" {
		return sc, sc.usageErr(fs, "pprof", "needs --metrics-addr, the address to serve the profiles on")
	}
	// The largest message as queued: a frame has its length before it.
	wire := cfg.MaxMessage
	if cfg.Framing == chat.Frame {
		wire += 4
	}
	if cfg.SendQueue < wire {
		why := "one message of --max-message " + formatSize(int64(cfg.MaxMessage))
		if wire != cfg.MaxMessage {
			why += " and its 4-byte frame length"
		}
		return sc, sc.usageErr(fs, "send-queue", "must be %s or more, to hold %s (a smaller queue disconnects every client), got %s",
			formatSize(int64(wire)), why, formatSize(int64(cfg.SendQueue)))
	}
	if cfg.AcceptBurst > 0 && cfg.AcceptRate == 0 {
		return sc, sc.usageErr(fs, "accept-burst", "must be 0 without --accept-rate, got %d", cfg.AcceptBurst)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return sc, sc.usageErr(fs, "log-level", "must be debug, info, warn or error, got %s", *logLevel)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return sc, sc.usageErr(fs, "log-format", "must be text or json, got %s", *logFormat)
	}
	cfg.Logger = newLogger(*logFormat, level)
	cfg.ReleaseMemory = true // the process is the server's: give memory back once a crowd has left
	// chat.Config's zero is the default; on the command line 0 means
	// none, which chat.Config says with a negative.
	for _, p := range []*time.Duration{&cfg.WriteTimeout, &cfg.MessageTimeout, &cfg.HalfCloseTimeout} {
		if *p == 0 {
			*p = -1
		}
	}
	if cfg.HalfCloseMax == 0 {
		cfg.HalfCloseMax = -1
	}
	return sc, nil
}

// defineServeFlags defines cport serve's flags on fs, setting sc, and returns the
// log flags' values, which parseServe turns into sc's logger.
func defineServeFlags(fs *flag.FlagSet, sc *serveConfig) (logFormat, logLevel *string) {
	cfg := &sc.Config
	fs.StringVar(&cfg.Addr, "addr", chat.DefaultAddr, "TCP `address` to listen on")
	backendVar(fs, &cfg.Backend, "backend", "auto", "cport `engine`: auto (the best this system allows) or one of "+strings.Join(cport.Backends(), ", "))
	intVar(fs, &cfg.Workers, "workers", 0, 0, maxWorkers, "worker goroutines dequeuing completions, and the port's concurrency cap: a `number` from 0 to 4096 (0: GOMAXPROCS)")
	framingVar(fs, &cfg.Framing, "framing", chat.Raw, []chat.Framing{chat.Raw, chat.Line, chat.Frame}, "how messages are cut, a `framing`: raw (one read), line (up to \\n) or frame (4-byte big-endian length)")
	sizeVar(fs, &cfg.MaxMessage, "max-message", chat.DefaultMaxMessage, 1, maxMessage, false, "largest message, a `size` from 1B to 16MiB (frame: the payload; line: with its \\n; raw: the read size)")
	fs.BoolVar(&cfg.NoEcho, "no-echo", false, "do not send a client's messages back to it")
	sizeVar(fs, &cfg.SendQueue, "send-queue", chat.DefaultSendQueue, minSendQueue, maxSendQueue, false, "bytes queued to one client before it is disconnected as a slow consumer: a `size` from 1KiB to 1GiB, and one --max-message at least")
	sizeVar(fs, &cfg.SenderLimit, "sender-limit", 0, 0, maxSendQueue, true, "bytes of one client's messages still queued to the others, per client, past which the server stops reading from it: a `size` up to 1GiB (0: --send-queue/8; none: no limit)")
	durationVar(fs, &cfg.WriteTimeout, "write-timeout", chat.DefaultWriteTimeout, false, "disconnect, as a slow consumer, a client that takes none of the bytes queued to it for this `duration` (0: never)")
	intVar(fs, &cfg.MaxConns, "max-conns", 0, 0, noMax, "connections held at most (more are closed at once): a `number` (0: no cap)")
	intVar(fs, &cfg.MaxConnsPerIP, "max-conns-per-ip", 0, 0, noMax, "connections held at most from one source address (more are reset at once): a `number` (0: no cap)")
	intNoneVar(fs, &cfg.SenderMessages, "sender-messages", 0, 0, math.MaxInt32, fmt.Sprintf("messages of one client's still queued to the others, per client, past which the server stops reading from it, whatever their size: a `number` up to %d (0: %d; none: no limit)", math.MaxInt32, chat.DefaultSenderMessages))
	floatVar(fs, &cfg.MessageRate, "message-rate", 0, false, "messages one client may send per second, on average, a second's worth at once; past it the server stops reading from it until its budget refills: a `rate` (0: no cap)")
	floatVar(fs, &cfg.AcceptRate, "accept-rate", 0, false, "connections accepted per second at most, on average (more are reset at once): a `rate` (0: no cap)")
	intVar(fs, &cfg.AcceptBurst, "accept-burst", 0, 0, noMax, "connections accepted at once above --accept-rate: a `number` (0: the rate, at least 1)")
	durationVar(fs, &cfg.IdleTimeout, "idle-timeout", 0, false, "disconnect a client silent for this `duration` (0: never)")
	durationVar(fs, &cfg.MessageTimeout, "message-timeout", chat.DefaultMessageTimeout, false, "disconnect a client whose message, once started, is not complete within this `duration` (0: never)")
	durationVar(fs, &cfg.ShutdownTimeout, "shutdown-timeout", chat.DefaultShutdownTimeout, true, "on SIGINT/SIGTERM, how long to go on delivering accepted messages: a `duration` above 0")
	durationVar(fs, &cfg.HalfCloseTimeout, "half-close-timeout", chat.DefaultHalfCloseTimeout, false, "how long a client stays in the room, still receiving, after it ends its stream (nc -N): a `duration` (0: it is closed once what was queued to it is written)")
	intVar(fs, &cfg.HalfCloseMax, "half-close-max", chat.DefaultHalfCloseMax, 0, noMax, "clients staying after their end of stream at most (one more closes the one that stayed longest, gracefully): a `number` (0: no cap)")
	fs.StringVar(&cfg.NATS, "nats", "", "cluster mode: NATS server `URL`s, comma-separated; servers of one --cluster relay each other's messages")
	fs.StringVar(&cfg.Cluster, "cluster", chat.DefaultCluster, "cluster `name`: NATS subject cport.NAME.relay, JetStream stream CPORT_NAME")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials `file`")
	fs.StringVar(&cfg.NATSTLSCA, "nats-tls-ca", "", "PEM `file` of the CAs of the NATS servers' certificates")
	durationVar(fs, &cfg.NATSMaxAge, "nats-max-age", chat.DefaultNATSMaxAge, true, "how long the stream keeps messages, the longest NATS outage that loses nothing: a `duration` above 0")
	sizeVar(fs, &cfg.NATSMaxBytes, "nats-max-bytes", chat.DefaultNATSMaxBytes, minNATSMaxBytes, noMax, false, "stream size bound: a `size` of 1MiB or more")
	choiceVar(fs, &cfg.NATSStorage, "nats-storage", "file", []string{"file", "memory"}, "the stream's `storage`: file (survives a NATS restart) or memory (a restart loses what some server had not read)")
	intVar(fs, &cfg.NATSReplicas, "nats-replicas", 1, 1, maxNATSReplicas, "stream replicas, up to the JetStream servers of the NATS cluster: a `number` from 1 to 5")
	fs.StringVar(&sc.TLSCert, "tls-cert", "", "serve TLS with the certificate (chain) of this PEM `file`: every client must speak TLS (cport client --tls)")
	fs.StringVar(&sc.TLSKey, "tls-key", "", "the PEM `file` of --tls-cert's private key")
	durationVar(fs, &cfg.TLSHandshakeTimeout, "tls-handshake-timeout", chat.DefaultTLSHandshakeTimeout, true, "with --tls-cert, how long a client has to complete its TLS handshake: a `duration` above 0")
	fs.StringVar(&cfg.WSAddr, "ws-addr", "", "serve the chat page and WebSocket clients (at /ws, in the same room) over HTTP on this `address`, such as 127.0.0.1:8080 (none: off)")
	fs.StringVar(&sc.WSOrigins, "ws-origin", "", "with --ws-addr, the `origins` whose pages may connect, comma-separated, such as https://chat.example.com (*: any; none: pages of the gateway's own host only)")
	durationVar(fs, &cfg.WSHandshakeTimeout, "ws-handshake-timeout", chat.DefaultWSHandshakeTimeout, true, "with --ws-addr, how long a connection has to send its HTTP request: a `duration` above 0")
	logFormat, logLevel = new(string), new(string)
	choiceVar(fs, logFormat, "log-format", "text", []string{"text", "json"}, "log `format`: text or json")
	choiceVar(fs, logLevel, "log-level", "info", []string{"debug", "info", "warn", "error"}, "log `level`: debug, info, warn or error")
	fs.StringVar(&sc.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz over HTTP on this `address`, such as 127.0.0.1:9125 (none: off)")
	fs.BoolVar(&sc.Pprof, "pprof", false, "also serve net/http/pprof's profiles under /debug/pprof/ on --metrics-addr: whoever reaches that address can profile the server")
	durationVar(fs, &sc.StatsInterval, "stats-interval", time.Minute, false, "log a line of the server's numbers every `duration` (0: never)")
	fs.StringVar(&sc.ConfigFile, "config", "", "read flags not given on the command line or in the environment from this TOML `file`: one key per flag, such as max-message = \"1KiB\" (deploy/cport.toml)")
	fs.BoolVar(&sc.PrintConfig, "print-config", false, "print every flag's value and where it came from (flag, env: CPORT_<FLAG> such as CPORT_MAX_MESSAGE, file: --config, or default), and exit")
	return logFormat, logLevel
}

// newLogger returns a logger writing to standard error in format, text
// or json, from level on.
func newLogger(format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// usageErr is usageErr for a bad value of the flag named name, after its
// parse: it names the flag as where its value came from (--name, the
// environment variable, or the configuration file and key).
func (sc *serveConfig) usageErr(fs *flag.FlagSet, name, format string, a ...any) error {
	return usageErr(fs, "%s: %s", origin(name, sc.source[name], sc.ConfigFile), fmt.Sprintf(format, a...))
}
