package chat

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"time"

	"cport.dev/cport"
)

// Config configures a Server. The zero value serves the tutorial's chat on
// port 25000: every field's zero means its default.
type Config struct {
	// Addr is the TCP address to listen on. Default ":25000".
	Addr string
	// Backend names the cport engine ("auto" by default).
	Backend string
	// Workers is how many goroutines dequeue completions, and the port's
	// concurrency cap. Default GOMAXPROCS (the tutorial used 4 threads).
	Workers int
	// Framing cuts the byte stream into messages. Default Raw, the
	// tutorial's behaviour: whatever one read returned.
	Framing Framing
	// MaxMessage is the largest message accepted, in bytes (for Frame, the
	// payload; for Line, the newline included; for Raw, the read size).
	// Default 65536.
	MaxMessage int
	// NoEcho stops a client's messages from coming back to it.
	NoEcho bool
	// SendQueue bounds the bytes waiting to be sent to one client; a
	// client past it is a slow consumer and is disconnected. It must hold
	// the most the server queues at once: a message of MaxMessage bytes
	// (plus its 4-byte header for Frame) and, for Line and Frame, the
	// whole messages of one read (16 KiB, cport.DefaultRecvBufferSize).
	// Default 4 MiB.
	SendQueue int
	// SenderLimit is how far one client may get ahead of the room: the
	// bytes of its messages still queued to other clients, on average per
	// client, each message counting 64 bytes more (a reader pays for each,
	// whatever its size). Past it the server stops reading from the client (TCP
	// backpressure then slows it) until the room has taken half of that;
	// a flooder is slowed to the pace of the room and fills no one's
	// queue; when a client's queue is half way to SendQueue, a quarter of
	// it is enough (the slower reader then sets the pace rather than being
	// disconnected). A client that stopped reading holds the senders up
	// until WriteTimeout or SendQueue disconnects it. A small limit (a
	// few KiB) keeps the others' messages from waiting behind a flooder's,
	// but makes senders wait for a stalled reader until WriteTimeout: the
	// default, SendQueue/8, lets the stalled reader's queue reach SendQueue
	// first (see docs/RELIABILITY.md). Negative means no limit.
	SenderLimit int
	// SenderMessages is how many of one client's messages may wait in the
	// others' queues, on average per client, before the server stops
	// reading from it the same way, whatever their size: others' messages
	// wait behind a flooder's in every queue, and this bounds how many,
	// so that the room keeps most of its pace during a flood of small or
	// empty messages. Clients that wait for replies, with a few messages
	// in flight each, are far below it. Messages queued only to a tenth of
	// the room or less (readers that stalled) count neither here nor in
	// SenderLimit. Default DefaultSenderMessages; negative means no limit.
	SenderMessages int
	// MessageRate caps the messages one client may send per second, on
	// average, with a burst of one second's worth: past it the server
	// stops reading from the client until its budget has refilled (TCP
	// backpressure then slows it). Where SenderLimit only keeps a flooder
	// from filling the queues, this keeps it from taking the room's
	// capacity: clients that wait for replies get theirs at the usual
	// pace. Zero means no cap.
	MessageRate float64
	// WriteTimeout disconnects, as a slow consumer (reset, counted in
	// Stats.SlowConsumers and Stats.WriteTimeouts), a client with bytes
	// queued to it that takes none of them for that long: a reader that
	// stalled below its SendQueue. A write counts when it completes, and
	// some engines (uring, portable) complete a write of many queued
	// messages only once all of it is taken: a reader taking such a batch
	// (up to SendQueue bytes) slower than its size per WriteTimeout looks
	// stalled meanwhile. Keep WriteTimeout above SendQueue divided by the
	// slowest read rate to be tolerated. It is checked as MessageTimeout
	// is, a client going between WriteTimeout and two checks after it.
	// Default DefaultWriteTimeout; negative means never.
	WriteTimeout time.Duration
	// MaxConns caps the connections held; those past it are closed at
	// once after accept (gracefully, counted in Stats.Refused). Zero means
	// no cap.
	MaxConns int
	// MaxConnsPerIP caps the connections held from one source address
	// (an IPv4-mapped IPv6 address counts as its IPv4 address; each IPv6
	// address counts alone); those past it are reset at once after
	// accept, counted in Stats.Refused and Stats.RefusedPerIP. Zero means
	// no cap.
	MaxConnsPerIP int
	// AcceptRate caps the connections accepted per second, on average
	// (a token bucket of AcceptBurst tokens, full at the start); those
	// past it are reset at once after accept, counted in Stats.Refused
	// and Stats.RefusedRate. A connection refused by MaxConnsPerIP takes
	// no token. Zero means no cap.
	AcceptRate float64
	// AcceptBurst is how many connections may be accepted at once above
	// AcceptRate. Default: AcceptRate rounded up, at least 1; it must be
	// zero without AcceptRate.
	AcceptBurst int
	// MessageTimeout bounds how long a message may take to arrive once
	// its first byte has: a client that leaves a message half-sent for
	// longer (a slow drip) is reset as bad input (counted in
	// Stats.BadInput and Stats.MessageTimeouts), whatever it sends
	// meanwhile. The clock of a message starts with the read that brings
	// its first byte. It is checked every quarter of the smallest of
	// IdleTimeout, MessageTimeout and WriteTimeout (every 10 ms at the
	// most often, every second at the least): a client goes between
	// MessageTimeout and that much later. Raw framing has no partial
	// messages: it does not apply. Default DefaultMessageTimeout;
	// negative means never.
	MessageTimeout time.Duration
	// IdleTimeout disconnects a client that has sent nothing for that long.
	// Zero means never. It does not apply to a half-closed client (see
	// HalfCloseTimeout).
	IdleTimeout time.Duration
	// HalfCloseTimeout is how long a client that ended its stream (shut
	// its sending side down, as nc -N does; or closed, which the server
	// cannot tell apart) stays in the room, still receiving every message
	// relayed, its own included. Then, or as soon as a write to it fails,
	// its connection is closed gracefully: what was queued to it is still
	// written. Default 2s; negative means no stay: it is closed at its end
	// of stream, after what was already queued to it.
	HalfCloseTimeout time.Duration
	// HalfCloseMax caps the clients staying after their end of stream
	// (HalfCloseTimeout): when a client ends its stream while HalfCloseMax
	// already stay, the one that has stayed longest is closed gracefully at
	// once (what was queued to it is still written), and counted in
	// Stats.HalfCloseEvicted. The oldest goes, not the newcomer: it has
	// had the longest to hear the replies to its last message, and the
	// newcomer's are most likely still on their way. Without a cap, a
	// flood of clients that connect and close (which look half-closed
	// until the server writes to them) would hold a descriptor each for
	// HalfCloseTimeout, up to the open-files limit. Default
	// DefaultHalfCloseMax; negative means no cap.
	HalfCloseMax int
	// ReleaseMemory makes the server give memory back to the system once
	// a crowd has left: when the clients held fall to an eighth of their
	// peak (of at least 256 since the last time), and still are a second
	// and HalfCloseTimeout later (the crowd's half-closed clients go
	// too), it frees what is unused (runtime/debug's FreeOSMemory, twice:
	// what sync.Pools kept through the first collection goes at the
	// second), at most once every 10 seconds. It frees the same way
	// once a crowd has gathered (at least 256 clients, twice as many as
	// at the last release) and no client has come for a second: the
	// garbage of their arrival, which a server holding idle clients
	// would keep, making no garbage that starts a collection (with
	// 10,000 idle clients, about 200 bytes of each one's share of the
	// resident memory).
	// Without it the Go runtime keeps that memory until its periodic
	// collection, two minutes later, then returns it over minutes. It
	// collects the whole process's garbage, a few milliseconds with few
	// clients left: a program embedding the server may prefer a policy of
	// its own. cport serve sets it.
	ReleaseMemory bool
	// ShutdownTimeout bounds how long Shutdown goes on delivering what was
	// already accepted. Default 5s.
	ShutdownTimeout time.Duration
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger

	// Bus relays messages between the servers of a cluster. Nil (the
	// default) fans out to this server's clients only, unless NATS is set.
	Bus Bus
	// NATS, when set, is the comma-separated NATS server URLs of cluster
	// mode: the servers sharing Cluster relay each other's messages through
	// a JetStream stream. Members of a cluster must use the same Framing.
	NATS string
	// Cluster names the cluster: subject cport.<Cluster>.relay, stream
	// CPORT_<Cluster>. Default "cport".
	Cluster string
	// NATSCreds is a NATS credentials file (user JWT and seed), if any.
	NATSCreds string
	// NATSTLSCA is a PEM file of the CAs that sign the NATS servers'
	// certificates, if not the system's.
	NATSTLSCA string
	// NATSMaxAge bounds how long the stream keeps a message: a server cut
	// off from NATS for longer misses messages. Default 1m.
	NATSMaxAge time.Duration
	// NATSMaxBytes bounds the stream's size in bytes. Default 256 MiB.
	NATSMaxBytes int64
	// NATSReplicas is the stream's replica count (up to the JetStream
	// servers of the NATS cluster). Default 1.
	NATSReplicas int
	// NATSStorage is the stream's storage: "file" (the default) survives a
	// restart of NATS, and a cluster loses nothing across one; "memory"
	// is lighter on the NATS servers, but a restart (of every replica)
	// loses the stream and what it held that some server had not read
	// (counted in BusStats.Lost). A stream keeps the storage it was
	// created with: changing it means deleting the stream.
	NATSStorage string

	// TLS, if set, makes every client speak TLS (crypto/tls, TLS 1.2 and
	// up by default): the server handshakes with each client as it is
	// accepted, within TLSHandshakeTimeout, and the chat runs inside the TLS stream with
	// the same framing and limits. It needs a certificate (Certificates,
	// GetCertificate or GetConfigForClient). A TLS client costs two
	// goroutines and a 16 KiB buffer while connected: see docs/OPERATIONS.md.
	TLS *tls.Config
	// TLSHandshakeTimeout bounds a TLS client's handshake: a client that
	// connects and says nothing holds a goroutine and a descriptor that
	// long (counted in Stats.HandshakeFailures, then closed). Default
	// DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration

	// WSAddr, if set, is the TCP address of the WebSocket gateway: an HTTP
	// listener that serves the chat page at / and takes WebSocket clients
	// (RFC 6455) at /ws into the same room as the TCP clients, under the
	// same limits. A WebSocket message is a chat message; every chat
	// message reaches a WebSocket client as one frame, text if it is
	// valid UTF-8, else binary. With Line framing a message's newline is
	// not in its frame, and a WebSocket message gets one on TCP. With TLS,
	// the gateway speaks it too (https, wss), within TLSHandshakeTimeout.
	WSAddr string
	// WSOrigins are the Origins whose pages may connect to the gateway
	// ("https://chat.example.com"; "*": any). With none, a browser's page
	// must come from the gateway's own host, as the Host header names it.
	// Clients that send no Origin (not browsers) are always let in.
	WSOrigins []string
	// WSHandshakeTimeout bounds the time a connection to the gateway
	// takes to send its HTTP request. Default DefaultWSHandshakeTimeout.
	WSHandshakeTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultAddr            = ":25000"
	DefaultMaxMessage      = 64 << 10
	DefaultSendQueue       = 4 << 20
	DefaultSenderMessages  = 64
	DefaultShutdownTimeout = 5 * time.Second
	// DefaultHalfCloseTimeout is long enough for the replies that follow
	// a message at machine speed, and short enough that clients which
	// left (most close both sides, and look the same until the server
	// writes to them) do not pile up in a quiet room under churn.
	DefaultHalfCloseTimeout = 2 * time.Second
	// DefaultHalfCloseMax lets 512 clients a second end their stream and
	// stay the whole DefaultHalfCloseTimeout, at a descriptor each: about
	// 5% of a 20,000 open-files limit.
	DefaultHalfCloseMax = 1024
	// DefaultWriteTimeout is NATS's write deadline: a client that takes
	// nothing in that long has stalled, not slowed.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultTLSHandshakeTimeout is crypto/tls's own servers' (net/http):
	// 10 s for a client to complete its handshake.
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultWSHandshakeTimeout is the same bound for a WebSocket
	// client's request.
	DefaultWSHandshakeTimeout = 10 * time.Second
	// DefaultMessageTimeout lets a 64 KiB message arrive at 2 KiB/s.
	DefaultMessageTimeout = 30 * time.Second
	DefaultCluster        = "cport"
	DefaultNATSMaxAge     = time.Minute
	DefaultNATSMaxBytes   = 256 << 20
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Backend == "" {
		c.Backend = "auto"
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.SenderLimit == 0 {
		c.SenderLimit = c.SendQueue / 8
	}
	if c.SenderMessages == 0 {
		c.SenderMessages = DefaultSenderMessages
	}
	if c.WSHandshakeTimeout == 0 {
		c.WSHandshakeTimeout = DefaultWSHandshakeTimeout
	}
	if c.TLSHandshakeTimeout == 0 {
		c.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MessageTimeout == 0 {
		c.MessageTimeout = DefaultMessageTimeout
	}
	if c.AcceptRate > 0 && c.AcceptBurst == 0 {
		c.AcceptBurst = int(max(1, math.Ceil(min(c.AcceptRate, math.MaxInt32))))
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.HalfCloseTimeout == 0 {
		c.HalfCloseTimeout = DefaultHalfCloseTimeout
	}
	if c.HalfCloseMax == 0 {
		c.HalfCloseMax = DefaultHalfCloseMax
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.NATSMaxAge <= 0 {
		c.NATSMaxAge = DefaultNATSMaxAge
	}
	if c.NATSMaxBytes <= 0 {
		c.NATSMaxBytes = DefaultNATSMaxBytes
	}
	if c.NATSReplicas <= 0 {
		c.NATSReplicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// A ConfigError reports a Config field out of range. Config.Validate and
// New return one per field wrong, joined (errors.Join).
type ConfigError struct {
	Field string // the Config field, as "MaxMessage"
	Value any    // its value
	Want  string // the values it may take, as "0 (the default, 65536) or more"
}

// Error names the field, its value and its range.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("chat: Config.%s is %v; want %s", e.Field, e.Value, e.Want)
}

// Validate reports the fields of c out of range, each in a *ConfigError,
// joined (nil if none). Zero is every field's default, and in range.
// New validates its Config.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, want string) {
		errs = append(errs, &ConfigError{Field: field, Value: value, Want: want})
	}
	nonNeg := func(field string, v int64, zero string) {
		if v < 0 {
			bad(field, v, "0 ("+zero+") or more")
		}
	}
	nonNegDur := func(field string, v time.Duration, zero string) {
		if v < 0 {
			bad(field, v, "0 ("+zero+") or more")
		}
	}
	if int(c.Framing) >= len(framingNames) {
		bad("Framing", c.Framing, "Raw, Line or Frame")
	}
	nonNeg("Workers", int64(c.Workers), "the default, GOMAXPROCS")
	nonNeg("MaxMessage", int64(c.MaxMessage), fmt.Sprint("the default, ", DefaultMaxMessage))
	nonNeg("SendQueue", int64(c.SendQueue), fmt.Sprint("the default, ", DefaultSendQueue))
	nonNeg("MaxConns", int64(c.MaxConns), "no cap")
	nonNeg("MaxConnsPerIP", int64(c.MaxConnsPerIP), "no cap")
	switch r := c.AcceptRate; {
	case math.IsNaN(r) || math.IsInf(r, 0) || r < 0:
		bad("AcceptRate", r, "0 (no cap) or a finite number of connections per second above 0")
	case c.AcceptBurst < 0:
		bad("AcceptBurst", c.AcceptBurst, "0 (the default, AcceptRate rounded up) or more")
	case c.AcceptBurst > 0 && r == 0:
		bad("AcceptBurst", c.AcceptBurst, "0 without AcceptRate (it is the burst above AcceptRate)")
	}
	if r := c.MessageRate; math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		bad("MessageRate", r, "0 (no cap) or a finite number of messages per second above 0")
	}
	nonNegDur("IdleTimeout", c.IdleTimeout, "never")
	nonNegDur("ShutdownTimeout", c.ShutdownTimeout, fmt.Sprint("the default, ", DefaultShutdownTimeout))
	nonNegDur("TLSHandshakeTimeout", c.TLSHandshakeTimeout, fmt.Sprint("the default, ", DefaultTLSHandshakeTimeout))
	nonNegDur("WSHandshakeTimeout", c.WSHandshakeTimeout, fmt.Sprint("the default, ", DefaultWSHandshakeTimeout))
	nonNegDur("NATSMaxAge", c.NATSMaxAge, fmt.Sprint("the default, ", DefaultNATSMaxAge))
	nonNeg("NATSMaxBytes", c.NATSMaxBytes, fmt.Sprint("the default, ", DefaultNATSMaxBytes))
	if c.NATSStorage != "" && c.NATSStorage != "file" && c.NATSStorage != "memory" {
		bad("NATSStorage", c.NATSStorage, `"file" (the default) or "memory"`)
	}
	if c.NATSReplicas < 0 || c.NATSReplicas > 5 {
		bad("NATSReplicas", c.NATSReplicas, "0 (the default, 1) to 5 (JetStream's most)")
	}
	if t := c.TLS; t != nil && len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		bad("TLS", "a tls.Config without a certificate", "Certificates, GetCertificate or GetConfigForClient set")
	}
	if len(errs) == 0 {
		d := c.withDefaults()
		if most := d.mostQueued(); d.SendQueue < most {
			why := fmt.Sprintf("a message of MaxMessage (%d) bytes", d.MaxMessage)
			switch {
			case d.Framing == Frame && most == d.MaxMessage+headerLen:
				why = fmt.Sprintf("a frame of MaxMessage (%d) bytes and its %d-byte header", d.MaxMessage, headerLen)
			case most > d.MaxMessage:
				why = fmt.Sprintf("the whole messages of one read (%d bytes)", most)
			}
			value := any(d.SendQueue)
			if c.SendQueue == 0 {
				value = fmt.Sprint(d.SendQueue, " (the default)")
			}
			bad("SendQueue", value, fmt.Sprintf("%d or more, to hold %s: with less, each one relayed would disconnect every client as a slow consumer", most, why))
		}
	}
	return errors.Join(errs...)
}

// mostQueued is the most bytes the server queues to a client at once (c
// has its defaults): one message, or for Line and Frame the whole
// messages of one read.
func (c Config) mostQueued() int {
	switch c.Framing {
	case Frame:
		return max(c.MaxMessage+headerLen, cport.DefaultRecvBufferSize)
	case Line:
		return max(c.MaxMessage, cport.DefaultRecvBufferSize)
	}
	return min(c.MaxMessage, cport.DefaultRecvBufferSize) // a raw message is one read
}
