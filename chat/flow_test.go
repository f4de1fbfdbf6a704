package chat

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestFlooderSlowed: one client sending small messages as fast as it can,
// without waiting for anyone, does not get the clients that read closed
// as slow consumers (it did: its fan-out filled every queue). The server
// stops reading from it while it is too far ahead of the room
// (Config.SenderLimit); the good clients keep their connection and get
// every message, theirs and the flooder's.
func TestFlooderSlowed(t *testing.T) {
	runMatrix(t, []Framing{Frame, Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.SendQueue = 256 << 10
		srv := startServer(t, cfg)
		const nGood = 8
		good := make([]*client, nGood)
		for i := range good {
			good[i] = srv.dial(fmt.Sprintf("good%d", i), keepReads)
		}
		fl := srv.dial("flooder", discardReads)
		srv.waitActive(nGood + 1)

		// The flood: as many small messages as the server lets through,
		// up to a bound, written without waiting for any echo.
		one := encode(s.framing, "f")
		batch := bytes.Repeat(one, (16<<10)/len(one))
		const flood = 8 << 20
		flooded := make(chan error, 1)
		go func() {
			fl.conn.SetWriteDeadline(time.Now().Add(2 * longWait))
			for sent := 0; sent < flood; sent += len(batch) {
				if _, err := fl.conn.Write(batch); err != nil {
					flooded <- err
					return
				}
			}
			flooded <- nil
		}()
		// Meanwhile every good client says something, once the server
		// has stopped reading from the flooder at least once (or the
		// flood is over: a server that keeps up never has to; under Wine
		// the flood is that slow).
		deadline := time.Now().Add(longWait)
		for srv.Stats().SendersPaused == 0 && len(flooded) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if srv.Stats().SendersPaused == 0 {
			t.Logf("the flood was over before the server had to pause the flooder")
		}
		for i, c := range good {
			c.send(encode(s.framing, fmt.Sprintf("hello from good client %d", i)))
		}
		floodErr := <-flooded
		if floodErr != nil {
			t.Fatalf("flooder's write: %v", floodErr)
		}
		// Every good client gets the whole flood and every good message.
		want := flood/len(batch)*len(batch) + nGood*len(encode(s.framing, "hello from good client 0"))
		for _, c := range good {
			if err := c.waitN(want); err != nil {
				t.Fatal(err)
			}
			data, _, _ := c.received()
			msgs, rest := splitMessages(s.framing, data)
			if len(rest) > 0 {
				t.Fatalf("%s: %d bytes of an incomplete message at the end", c.name, len(rest))
			}
			hellos := 0
			for _, m := range msgs {
				if bytes.Contains(m, []byte("hello from good client")) {
					hellos++
				}
			}
			if hellos != nGood {
				t.Errorf("%s got %d of the %d good clients' messages", c.name, hellos, nGood)
			}
		}
		st := srv.Stats()
		if st.SlowConsumers != 0 || st.Active != nGood+1 {
			t.Errorf("stats %+v; want no slow consumer, %d clients still held", st, nGood+1)
		}
	})
}

// TestMessageRate: a client that sent more than Config.MessageRate allows
// is not read from until its budget has refilled, while another client is
// heard at once; nothing it sent is lost.
func TestMessageRate(t *testing.T) {
	runMatrix(t, []Framing{Frame, Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MessageRate = 200
		srv := startServer(t, cfg)
		fast := srv.dial("fast", discardReads)
		other := srv.dial("other", keepReads)
		srv.waitActive(2)

		// 600 messages in one write: a second's budget, and two seconds
		// more, owed before the server reads from the client again.
		const n = 600
		one := encode(s.framing, "m")
		fast.send(bytes.Repeat(one, n))
		if err := other.waitN(n * len(one)); err != nil {
			t.Fatal(err)
		}
		owing := time.Now()
		srv.waitStats("the fast client paused", func(st Stats) bool { return st.SendersPaused > 0 })
		late := encode(s.framing, "late")
		fast.send(late)
		hello := encode(s.framing, "hello")
		other.send(hello)
		if err := other.waitN(n*len(one) + len(hello)); err != nil {
			t.Fatal(err)
		}
		if data, _, _ := other.received(); bytes.Contains(data, late) {
			t.Fatal("the fast client was read from while it owed two seconds of its budget")
		}
		if err := other.waitN(n*len(one) + len(hello) + len(late)); err != nil {
			t.Fatal(err)
		}
		// The debt was 400 messages at 200 a second.
		if took := time.Since(owing); took < 1500*time.Millisecond {
			t.Errorf("the fast client was read from again %v after it owed 2s", took)
		}
	})
}

// TestRelayShare: a read full of empty messages is relayed a share at a
// time. It was relayed whole: one read of a zero-length flood put thousands
// of messages ahead of everyone else's in every queue before the server
// could pause the flooder, and the room's pace fell to a hundredth. Here
// the room's queues are kept from draining (readers that do not read, their
// kernel buffers full), and a read of 4,096 empty messages from one more
// client must stop after a run or two: past Config.SenderMessages, the rest
// waits in the held receive.
func TestRelayShare(t *testing.T) {
	runMatrix(t, []Framing{Frame, Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		srv := startServer(t, cfg)
		var stuck []*client
		for i := range 3 {
			c := srv.dial(fmt.Sprintf("stuck%d", i), noReads)
			if err := c.conn.SetReadBuffer(4 << 10); err != nil {
				t.Fatal(err)
			}
			stuck = append(stuck, c)
		}
		x := srv.dial("x", noReads)
		filler := srv.dial("filler", discardReads)
		srv.waitActive(5)

		// The filler writes until the server pauses it: the readers'
		// kernel buffers are full and its messages wait in their queues.
		empty := encode(s.framing, "")
		batch := bytes.Repeat(empty, 4096)
		stop := make(chan struct{})
		filled := make(chan struct{})
		go func() {
			defer close(filled)
			filler.conn.SetWriteDeadline(time.Now().Add(2 * longWait))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := filler.conn.Write(batch); err != nil {
					return
				}
			}
		}()
		srv.waitStats("the filler paused", func(st Stats) bool { return st.SendersPaused > 0 })
		close(stop)

		// x's session reads 4,096 empty messages at once.
		var xs *session
		srv.hub.each(func(ss *session) {
			if ss.conn.RemoteAddr().String() == x.localAddr() {
				xs = ss
			}
		})
		if xs == nil {
			t.Fatal("x's session not found")
		}
		// The room is contended: another client sent a moment ago. (The
		// filler's last relay may be more than a period old by now on a
		// slow machine: under Wine the test then found no contention, and
		// no pause, 5 times in 50. The filler's own session is the flow
		// goroutine's while it is paused: a session of the test's counts.)
		srv.flow.contended(new(session), srv.clock())
		var tl tally
		at, pause := srv.relayAll(xs, batch, 0, &tl)
		delivered := tl.deliveries
		room := int64(len(stuck) + 2)
		if !pause || at >= len(batch) {
			t.Fatalf("relayAll of %d empty messages: stopped at byte %d of %d, pause %v; want a pause before the end",
				len(batch)/len(empty), at, len(batch), pause)
		}
		if most := int64(2*runMax) * room; delivered > most {
			t.Errorf("relayAll queued %d deliveries before pausing; want at most %d (two runs of %d messages to %d clients)",
				delivered, most, runMax, room)
		}
		// x's receive goes back to its owner, the worker, through the
		// port: closing the connection ends it there, which lets go of
		// what x kept (the test owned x's session only while x had no
		// receive completion out).
		xs.conn.Close()
		for _, c := range stuck {
			c.conn.Close()
		}
		filler.conn.Close()
		<-filled
	})
}

// TestStalledMinority: a reader that stalled, one in eleven clients, holds
// no sender up: the messages queued only to it count in no sender's limit,
// so the sender goes on and the stalled reader's queue reaches SendQueue,
// which evicts it. (Before, a sender with a small SenderLimit waited for it
// until WriteTimeout: here a minute.)
func TestStalledMinority(t *testing.T) {
	runMatrix(t, []Framing{Frame}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.SenderLimit = 4 << 10
		cfg.MaxMessage = 4 << 10
		// A reader that lags alone is a stalled minority too: on a loaded
		// machine, a healthy one scheduled late fell 64 KiB behind and was
		// evicted; 512 KiB leaves it room, and the stalled one still goes.
		cfg.SendQueue = 512 << 10
		cfg.WriteTimeout = time.Minute
		srv := startServer(t, cfg)
		stalled := srv.dial("stalled", noReads)
		if err := stalled.conn.SetReadBuffer(4 << 10); err != nil {
			t.Fatal(err)
		}
		var readers []*client
		for i := range 9 {
			readers = append(readers, srv.dial(fmt.Sprintf("reader%d", i), discardReads))
		}
		sender := srv.dial("sender", discardReads)
		srv.waitActive(11)

		msg := encode(s.framing, string(bytes.Repeat([]byte("m"), 1000)))
		const total = 8000 // 8 MB: past the stalled reader's kernel buffers (4 MB or more) and SendQueue
		go func() {
			sender.conn.SetWriteDeadline(time.Now().Add(2 * longWait))
			for range total {
				if _, err := sender.conn.Write(msg); err != nil {
					return
				}
			}
		}()
		srv.waitStats("the stalled reader evicted", func(st Stats) bool { return st.SlowConsumers == 1 })
		for _, c := range append(readers, sender) {
			if err := c.waitN(total * len(msg)); err != nil {
				t.Fatal(err)
			}
		}
	})
}
