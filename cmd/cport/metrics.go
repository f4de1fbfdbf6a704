package main

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"cport.dev/cport"
	"cport.dev/cport/chat"
)

// The server's Prometheus metrics (docs/OPERATIONS.md lists them). They are
// read at scrape time from the counters the server keeps anyway
// (chat.Server.Stats, BusStats, EngineStats, SendQueues): nothing is
// counted for the metrics on the relay path.

// snapshot is the state of a server at one moment, as the metrics and the
// stats line report it.
type snapshot struct {
	stats  chat.Stats
	bus    chat.BusStats
	engine cport.Stats
	queues chat.QueueStats
	ready  error // of Ready
	relay  error // of RelayReady
}

// A statsSource is what the metrics read: a running chat server.
type statsSource interface {
	Stats() chat.Stats
	BusStats() chat.BusStats
	EngineStats() cport.Stats
	SendQueues(bounds []int64) chat.QueueStats
	Ready() error
	RelayReady() error
	Config() chat.Config
}

// takeSnapshot reads src's counters, counting the send queues against
// bounds.
func takeSnapshot(src statsSource, bounds []int64) snapshot {
	return snapshot{
		stats:  src.Stats(),
		bus:    src.BusStats(),
		engine: src.EngineStats(),
		queues: src.SendQueues(bounds),
		ready:  src.Ready(),
		relay:  src.RelayReady(),
	}
}

// queueBounds returns the buckets of the send-queue histogram: 0, then
// powers of 4 from 1KiB up to the send-queue limit, which ends them.
func queueBounds(limit int) []int64 {
	bounds := []int64{0}
	for b := int64(1 << 10); b < int64(limit); b *= 4 {
		bounds = append(bounds, b)
	}
	return append(bounds, int64(limit))
}

// A metric is one metric of the server: a counter or a gauge whose value
// (one per value of its label, if it has one) is read from a snapshot.
type metric struct {
	name, help string
	kind       prometheus.ValueType
	label      string // "" or the label's name
	values     func(s *snapshot) []labeled
	cluster    bool // only in cluster mode
}

// labeled is a value of a metric, with the value of its label, if any.
type labeled struct {
	label string
	v     float64
}

// one is the value of a metric without labels.
func one[T int | int64 | uint64](v T) []labeled { return []labeled{{v: float64(v)}} }

// boolValue is 1 for true, 0 for false.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metrics are the server's metrics read from a snapshot; cport_info,
// cport_build_info and the send-queue histogram are added by the
// collector.
var metrics = []metric{
	{name: "cport_ready", help: "1 while the server is ready (listening, not shutting down, its cluster relay up), as /readyz says; else 0.", kind: prometheus.GaugeValue,
		values: func(s *snapshot) []labeled { return []labeled{{v: boolValue(s.ready == nil)}} }},
	{name: "cport_connections", help: "Client connections held now, half-closed ones included.", kind: prometheus.GaugeValue,
		values: func(s *snapshot) []labeled { return one(s.stats.Active) }},
	{name: "cport_websocket_connections", help: "Of cport_connections, the WebSocket gateway's clients (--ws-addr).", kind: prometheus.GaugeValue,
		values: func(s *snapshot) []labeled { return one(s.stats.WebSockets) }},
	{name: "cport_websocket_requests_total", help: "HTTP requests to the WebSocket gateway (--ws-addr), by how they ended: upgraded (a WebSocket client), page (the chat page served), refused (answered with an error), failed (the connection failed or timed out first).", kind: prometheus.CounterValue, label: "result",
		values: func(s *snapshot) []labeled {
			st := &s.stats
			return []labeled{
				{"upgraded", float64(st.WSUpgrades)},
				{"page", float64(st.WSPages)},
				{"refused", float64(st.WSRefused)},
				{"failed", float64(st.WSFailed)},
			}
		}},
	{name: "cport_connections_half_closed", help: "Clients that ended their stream and still receive (--half-close-timeout).", kind: prometheus.GaugeValue,
		values: func(s *snapshot) []labeled { return one(s.stats.HalfClosed) }},
	{name: "cport_connections_accepted_total", help: "Client connections accepted.", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.Accepted) }},
	{name: "cport_connections_refused_total", help: "Connections closed or reset at once after accept, by the limit that refused them.", kind: prometheus.CounterValue, label: "reason",
		values: func(s *snapshot) []labeled {
			st := &s.stats
			return []labeled{
				{"max_conns", float64(st.Refused - st.RefusedPerIP - st.RefusedRate)},
				{"max_conns_per_ip", float64(st.RefusedPerIP)},
				{"accept_rate", float64(st.RefusedRate)},
			}
		}},
	{name: "cport_connections_closed_total", help: "Client connections ended, by why: peer (the client left), idle, slow_consumer (a full send queue), write_timeout (a stalled one), oversize (a message over --max-message), message_timeout, bad_input (other), half_close_evicted (past --half-close-max), error.", kind: prometheus.CounterValue, label: "reason",
		values: func(s *snapshot) []labeled {
			st := &s.stats
			return []labeled{
				{"peer", float64(st.Left - st.HalfCloseEvicted)},
				{"idle", float64(st.IdleTimeouts)},
				{"slow_consumer", float64(st.SlowConsumers - st.WriteTimeouts)},
				{"write_timeout", float64(st.WriteTimeouts)},
				{"oversize", float64(st.Oversize)},
				{"message_timeout", float64(st.MessageTimeouts)},
				{"bad_input", float64(st.BadInput - st.Oversize - st.MessageTimeouts)},
				{"half_close_evicted", float64(st.HalfCloseEvicted)},
				{"error", float64(st.ConnErrors)},
			}
		}},
	{name: "cport_senders_paused_total", help: "Times the server stopped reading from a client too far ahead of the room (--sender-limit, --sender-messages, --message-rate).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.SendersPaused) }},
	{name: "cport_messages_received_total", help: "Messages of local clients relayed (raw framing: reads).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.MessagesIn) }},
	{name: "cport_messages_sent_total", help: "Messages queued to clients, local and from other servers of the cluster: each message once per client it reached.", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.MessagesOut) }},
	{name: "cport_received_bytes_total", help: "Bytes received from clients.", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.BytesIn) }},
	{name: "cport_sent_bytes_total", help: "Bytes queued to clients (frame framing: with each length).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.BytesOut) }},
	{name: "cport_relayed_runs_total", help: "Runs of whole messages relayed (usually one per read), local and from other servers.", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.Relayed) }},
	{name: "cport_deliveries_total", help: "Fan-out deliveries: runs queued to clients, each run once per client it reached.", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.stats.Deliveries) }},
	{name: "cport_send_queue_largest_bytes", help: "The longest send queue of a client, in bytes, now.", kind: prometheus.GaugeValue,
		values: func(s *snapshot) []labeled { return one(s.queues.Largest) }},
	{name: "cport_engine_writes_total", help: "Write system calls the engine started (sendmsg, writev, WSASend).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.engine.Writes) }},
	{name: "cport_engine_wakeups_total", help: "Wake-ups of the engine's own threads or pollers (0 where it does not count them).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.engine.Wakes) }},
	{name: "cport_engine_completions_total", help: "Completions the engine took from the kernel (io_uring CQEs; 0 where not counted).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.engine.Reaped) }},
	{name: "cport_engine_cq_overflows_total", help: "Times the kernel's completion queue was full and completions waited on its overflow list (io_uring): a larger ring may help.", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.engine.Overflows) }},
	{name: "cport_engine_recv_buffers_exhausted_total", help: "Receives that found every provided receive buffer out and waited for one (io_uring -ENOBUFS).", kind: prometheus.CounterValue,
		values: func(s *snapshot) []labeled { return one(s.engine.Starved) }},
	{name: "cport_engine_loops", help: "The engine's event loops (io_uring rings, epoll pollers).", kind: prometheus.GaugeValue,
		values: func(s *snapshot) []labeled { return one(s.engine.Loops) }},
	{name: "cport_engine_loop_connections", help: "Connections held by each event loop, where the engine deals them to loops (uring).", kind: prometheus.GaugeValue, label: "loop",
		values: func(s *snapshot) []labeled {
			ls := make([]labeled, len(s.engine.LoopConns))
			for i, n := range s.engine.LoopConns {
				ls[i] = labeled{strconv.Itoa(i), float64(n)}
			}
			return ls
		}},

	// The cluster relay (--nats).
	{name: "cport_relay_up", help: "1 while the cluster relay is up: connected to NATS, the stream set up, publications stored.", kind: prometheus.GaugeValue, cluster: true,
		values: func(s *snapshot) []labeled { return []labeled{{v: boolValue(s.relay == nil)}} }},
	{name: "cport_relay_published_runs_total", help: "Runs of local clients handed to the relay and sent.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Published) }},
	{name: "cport_relay_published_batches_total", help: "Messages published on the cluster's subject (one or more runs each).", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Batches) }},
	{name: "cport_relay_refused_runs_total", help: "Runs the relay refused: too large, or its publish buffer full.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Refused) }},
	{name: "cport_relay_received_batches_total", help: "Messages of the other servers received from the subject.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Received) }},
	{name: "cport_relay_delivered_runs_total", help: "Runs of the other servers relayed to local clients.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Delivered) }},
	{name: "cport_relay_dropped_total", help: "Foreign or malformed messages on the subject, dropped.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Dropped) }},
	{name: "cport_relay_duplicates_total", help: "Messages of the subject seen twice, dropped.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Duplicate) }},
	{name: "cport_relay_missed_batches_total", help: "Messages of the subject gone from the stream before they were read.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Missed) }},
	{name: "cport_relay_lost_messages_total", help: "Chat messages in the missed messages of the subject.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Lost) }},
	{name: "cport_relay_replayed_batches_total", help: "Messages of the subject published again after a failed acknowledgement.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Replayed) }},
	{name: "cport_relay_reconnects_total", help: "Reconnections to NATS.", kind: prometheus.CounterValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Reconnect) }},
	{name: "cport_relay_pending_batches", help: "The relay's lag in messages: messages of the subject stored and not yet read by this server, when it read the last one.", kind: prometheus.GaugeValue, cluster: true,
		values: func(s *snapshot) []labeled { return one(s.bus.Pending) }},
	{name: "cport_relay_lag_seconds", help: "The relay's lag in time: how long the last message of the subject read had been stored in the stream.", kind: prometheus.GaugeValue, cluster: true,
		values: func(s *snapshot) []labeled { return []labeled{{v: s.bus.Lag.Seconds()}} }},
}

// collector is the server's prometheus.Collector.
type collector struct {
	src     statsSource
	cluster bool
	bounds  []int64
	descs   []*prometheus.Desc // of metrics, at the same index
	info    prometheus.Metric  // cport_info
	build   prometheus.Metric  // cport_build_info
	queues  *prometheus.Desc   // cport_send_queue_bytes
	latency *prometheus.Desc   // cport_delivery_latency_seconds
}

// newCollector returns the collector of src's metrics.
func newCollector(src statsSource) *collector {
	cfg := src.Config()
	c := &collector{src: src, cluster: cfg.NATS != "" || cfg.Bus != nil, bounds: queueBounds(cfg.SendQueue)}
	for _, m := range metrics {
		var labels []string
		if m.label != "" {
			labels = []string{m.label}
		}
		c.descs = append(c.descs, prometheus.NewDesc(m.name, m.help, labels, nil))
	}
	cluster := ""
	if c.cluster {
		cluster = cfg.Cluster
	}
	c.info = prometheus.MustNewConstMetric(
		prometheus.NewDesc("cport_info", "The server's engine and settings, as labels; the value is 1.",
			[]string{"backend", "framing", "workers", "max_message_bytes", "send_queue_bytes", "cluster"}, nil),
		prometheus.GaugeValue, 1,
		src.EngineStats().Backend, cfg.Framing.String(), strconv.Itoa(cfg.Workers),
		strconv.Itoa(cfg.MaxMessage), strconv.Itoa(cfg.SendQueue), cluster)
	b := readBuild()
	c.build = prometheus.MustNewConstMetric(
		prometheus.NewDesc("cport_build_info", "The build of cport: module version, VCS revision, Go version; the value is 1.",
			[]string{"version", "revision", "goversion"}, nil),
		prometheus.GaugeValue, 1, b.version, b.revision, runtime.Version())
	c.queues = prometheus.NewDesc("cport_send_queue_bytes", "Bytes queued to each client, not yet written, across the clients held at scrape time.", nil, nil)
	c.latency = prometheus.NewDesc("cport_delivery_latency_seconds", "Time from a worker relaying a message to its write to one client, sampled (about one relayed message in 64).", nil, nil)
	return c
}

// Describe sends the descriptors of every metric the collector may send.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for i, m := range metrics {
		if !m.cluster || c.cluster {
			ch <- c.descs[i]
		}
	}
	ch <- c.info.Desc()
	ch <- c.build.Desc()
	ch <- c.queues
	ch <- c.latency
}

// Collect reads the server's counters and sends them as metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := takeSnapshot(c.src, c.bounds)
	for i, m := range metrics {
		if m.cluster && !c.cluster {
			continue
		}
		for _, v := range m.values(&s) {
			if m.label != "" {
				ch <- prometheus.MustNewConstMetric(c.descs[i], m.kind, v.v, v.label)
			} else {
				ch <- prometheus.MustNewConstMetric(c.descs[i], m.kind, v.v)
			}
		}
	}
	ch <- c.info
	ch <- c.build
	buckets := make(map[float64]uint64, len(c.bounds))
	for i, b := range c.bounds {
		buckets[float64(b)] = s.queues.Counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(c.queues, uint64(s.queues.Clients), float64(s.queues.Bytes), buckets)
	lat := s.stats.Latency
	lb := make(map[float64]uint64, len(chat.LatencyBounds))
	for i, b := range chat.LatencyBounds {
		lb[b.Seconds()] = uint64(lat.Counts[i])
	}
	ch <- prometheus.MustNewConstHistogram(c.latency, uint64(lat.Count), lat.Sum.Seconds(), lb)
}
