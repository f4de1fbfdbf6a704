package chat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestStatsTraffic: the counters of messages and bytes in and out match
// the traffic once every message has arrived everywhere and the workers
// have added their tallies (a worker adds its counts after the batch it
// handles, so the counters may trail the clients by one batch): each
// message in is a message out per client, and the clients that leave,
// reset or send an oversized message are counted by why.
func TestStatsTraffic(t *testing.T) {
	runMatrix(t, []Framing{Line, Frame}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MaxMessage = 100
		ts := startServer(t, cfg)
		const clients, each = 3, 5
		var cs []*client
		for i := range clients {
			cs = append(cs, ts.dial(fmt.Sprint("c", i), keepReads))
		}
		ts.waitActive(clients)
		var all []byte
		for i, c := range cs {
			var sent []byte
			for j := range each {
				sent = append(sent, encode(s.framing, fmt.Sprintf("message %d of %d", j, i))...)
			}
			c.send(sent) // one write: one or more reads, one or more runs
			all = append(all, sent...)
			for _, r := range cs {
				if err := r.waitN(len(all)); err != nil { // all received: nothing in flight
					t.Fatal(err)
				}
			}
		}
		// A worker may still be between its fan-out and adding its tally.
		st := ts.waitStats("the traffic counted", func(st Stats) bool {
			return st.MessagesIn >= clients*each && st.BytesOut >= int64(clients*len(all))
		})
		if st.MessagesIn != clients*each || st.MessagesOut != clients*clients*each {
			t.Errorf("MessagesIn %d, MessagesOut %d; want %d and %d", st.MessagesIn, st.MessagesOut, clients*each, clients*clients*each)
		}
		if st.BytesIn != int64(len(all)) || st.BytesOut != int64(clients*len(all)) {
			t.Errorf("BytesIn %d, BytesOut %d; want %d and %d", st.BytesIn, st.BytesOut, len(all), clients*len(all))
		}
		if st.Deliveries != clients*st.Relayed {
			t.Errorf("Deliveries %d; want Relayed %d times %d clients", st.Deliveries, st.Relayed, clients)
		}

		// One leaves, one resets, one sends a message over the limit.
		cs[0].conn.Close()
		cs[1].reset()
		cs[2].send(encode(s.framing, string(bytes.Repeat([]byte("x"), 200))))
		st = ts.waitStats("three gone", func(st Stats) bool { return st.Active == 0 })
		if st.Left != 2 || st.BadInput != 1 || st.Oversize != 1 || st.ConnErrors != 0 {
			t.Errorf("Left %d, BadInput %d, Oversize %d, ConnErrors %d; want 2, 1, 1, 0", st.Left, st.BadInput, st.Oversize, st.ConnErrors)
		}
	})
}

// TestReady: a server is ready while it serves, not once it shuts down.
func TestReady(t *testing.T) {
	s := setup{backend: testBackends(t)[0], framing: Line}
	cfg := s.config()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Ready(); !errors.Is(err, ErrNotServing) {
		t.Errorf("Ready before Serve = %v; want ErrNotServing", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	ts := &testServer{Server: srv, tb: t}
	ts.waitStats("ready", func(Stats) bool { return srv.Ready() == nil })
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Ready(); !errors.Is(err, ErrEnding) {
		t.Errorf("Ready after Shutdown = %v; want ErrEnding", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestSendQueues: the send queues are counted into the buckets asked for.
func TestSendQueues(t *testing.T) {
	s := setup{backend: testBackends(t)[0], framing: Line}
	ts := startServer(t, s.config())
	ts.dial("a", keepReads)
	ts.dial("b", keepReads)
	ts.waitActive(2)
	qs := ts.SendQueues([]int64{0, 1024})
	if qs.Clients != 2 || len(qs.Counts) != 2 || qs.Counts[1] != 2 || qs.Bytes < 0 || qs.Largest > qs.Bytes {
		t.Errorf("SendQueues = %+v; want 2 clients, both in the last bucket", qs)
	}
}

// TestLatencySampled: the delivery latency is sampled while clients chat,
// every sample counted once, within the buckets' order, none negative.
func TestLatencySampled(t *testing.T) {
	runMatrix(t, []Framing{Frame}, func(t *testing.T, s setup) {
		srv := startServer(t, s.config())
		a, b := srv.dial("a", discardReads), srv.dial("b", discardReads)
		srv.waitActive(2)
		msg := encode(s.framing, "sampled?")
		sent := 0
		for srv.Stats().Latency.Count < 5 {
			if sent >= 100000 {
				t.Fatalf("no 5 latency samples after %d messages: %+v", sent, srv.Stats().Latency)
			}
			a.send(msg) // one read each, mostly: about one run in 64 is sampled
			sent++
			if sent%64 == 0 {
				if err := b.waitN(sent * len(msg)); err != nil {
					t.Fatal(err)
				}
			}
		}
		l := srv.Stats().Latency
		for i := 1; i < len(l.Counts); i++ {
			if l.Counts[i] < l.Counts[i-1] {
				t.Fatalf("buckets not cumulative: %v", l.Counts)
			}
		}
		if l.Count < l.Counts[len(l.Counts)-1] || l.Sum <= 0 || l.Sum > time.Duration(l.Count)*longWait {
			t.Errorf("latency %+v: want counts within Count, a positive sum under %v each", l, longWait)
		}
		t.Logf("%d messages, latency %+v", sent, l)
	})
}
