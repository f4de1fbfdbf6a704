package chat

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRelay measures the fan-out: 100 clients, 10 of which send
// 64-byte frames in a closed loop, each keeping 8 of its own messages in
// flight (one counts as acknowledged when its echo comes back). An
// operation is one message sent; it makes 100 deliveries. Besides ns/op,
// it reports deliveries per second, ns per delivery and heap allocations
// per delivery (of the whole process: the server and the clients).
func BenchmarkRelay(b *testing.B) {
	for _, backend := range testBackends(b) {
		b.Run(backend, func(b *testing.B) { benchRelay(b, backend) })
	}
}

func benchRelay(b *testing.B, backend string) {
	const (
		clients  = 100
		senders  = 10
		inFlight = 8
		payload  = 64
		msgLen   = 4 + payload
	)
	srv, err := New(Config{Addr: "127.0.0.1:0", Backend: backend, Framing: Frame})
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		srv.Close()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()

	conns := make([]net.Conn, clients)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", srv.Addr().String()); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}
	for deadline := time.Now().Add(longWait); srv.Stats().Active != clients; {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d clients registered", srv.Stats().Active, clients)
		}
		time.Sleep(time.Millisecond)
	}

	// Sender i sends quota[i] messages; everyone receives them all.
	quota := make([]int, senders)
	for i := range b.N {
		quota[i%senders]++
	}
	want := int64(b.N) * clients * msgLen
	var received atomic.Int64
	allIn := make(chan struct{})
	acks := make([]chan struct{}, senders)
	for i := range acks {
		acks[i] = make(chan struct{}, inFlight)
	}
	var readers sync.WaitGroup
	for ci, c := range conns {
		readers.Go(func() {
			buf := make([]byte, 64<<10)
			var pos int64 // in the stream: messages start at multiples of msgLen
			for pos < int64(b.N)*msgLen {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if ci < senders {
					// The byte after each header names the sender.
					first := (4 - pos%msgLen + msgLen) % msgLen
					for i := first; i < int64(n); i += msgLen {
						if int(buf[i]) == ci {
							acks[ci] <- struct{}{}
						}
					}
				}
				pos += int64(n)
				if received.Add(int64(n)) == want {
					close(allIn)
				}
			}
		})
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	errs := make(chan error, senders)
	for i := range senders {
		go func() {
			msg := make([]byte, msgLen)
			binary.BigEndian.PutUint32(msg, payload)
			msg[4] = byte(i)
			for k := 5; k < msgLen; k++ {
				msg[k] = byte('a' + k%26)
			}
			sent := 0
			for ; sent < min(inFlight, quota[i]); sent++ {
				if _, err := conns[i].Write(msg); err != nil {
					errs <- err
					return
				}
			}
			for acked := 0; acked < quota[i]; acked++ {
				<-acks[i]
				if sent < quota[i] {
					if _, err := conns[i].Write(msg); err != nil {
						errs <- err
						return
					}
					sent++
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-allIn:
	case <-time.After(4 * longWait):
		b.Fatalf("%d of %d bytes delivered after %v", received.Load(), want, 4*longWait)
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	runtime.ReadMemStats(&after)

	deliveries := float64(b.N) * clients
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
	if st := srv.Stats(); st.SlowConsumers != 0 || st.Active != clients {
		b.Errorf("stats %+v; want every client served", st)
	}
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
}
