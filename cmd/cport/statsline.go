package main

import (
	"log/slog"
	"math"
	"time"
)

// The periodic stats line (--stats-interval): the numbers of the metrics,
// one log line, for an operator without a Prometheus.

// logStats logs src's numbers every interval until stop is closed.
func logStats(log *slog.Logger, src statsSource, every time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	bounds := queueBounds(src.Config().SendQueue)
	last, lastAt := takeSnapshot(src, bounds), time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			s := takeSnapshot(src, bounds)
			log.Info("stats", statsAttrs(&s, &last, now.Sub(lastAt), src.Config().NATS != "")...)
			last, lastAt = s, now
		}
	}
}

// statsAttrs returns the attributes of a stats line: s, and the rates of
// messages since last, d earlier.
func statsAttrs(s, last *snapshot, d time.Duration, cluster bool) []any {
	st := &s.stats
	perSec := func(now, then int64) float64 {
		if d <= 0 {
			return 0
		}
		return math.Round(float64(now-then)/d.Seconds()*10) / 10
	}
	ready := "yes"
	if s.ready != nil {
		ready = s.ready.Error()
	}
	attrs := []any{
		"ready", ready,
		"conns", st.Active, "accepted", st.Accepted, "refused", st.Refused,
		"left", st.Left, "idle_timeouts", st.IdleTimeouts, "slow_consumers", st.SlowConsumers,
		"bad_input", st.BadInput, "conn_errors", st.ConnErrors,
		"msgs_in", st.MessagesIn, "msgs_out", st.MessagesOut,
		"msgs_in_per_s", perSec(st.MessagesIn, last.stats.MessagesIn),
		"msgs_out_per_s", perSec(st.MessagesOut, last.stats.MessagesOut),
		"bytes_in", st.BytesIn, "bytes_out", st.BytesOut, "deliveries", st.Deliveries,
		"send_queue_bytes", s.queues.Bytes, "send_queue_largest", s.queues.Largest,
		"senders_paused", st.SendersPaused,
		"engine", s.engine.Backend, "engine_writes", s.engine.Writes,
	}
	if cluster {
		relay := "up"
		if s.relay != nil {
			relay = "down"
		}
		b := &s.bus
		attrs = append(attrs, "relay", relay, "relay_published", b.Published, "relay_received", b.Received,
			"relay_delivered", b.Delivered, "relay_missed", b.Missed, "relay_lost_messages", b.Lost,
			"relay_replayed", b.Replayed, "relay_reconnects", b.Reconnect)
	}
	return attrs
}
