package cport_test

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// forEachBackendBench runs f as a sub-benchmark per backend.
func forEachBackendBench(b *testing.B, f func(b *testing.B, name string)) {
	for _, name := range backends(b) {
		b.Run("backend="+name, func(b *testing.B) {
			labelTest(b)
			f(b, name)
		})
	}
}

// BenchmarkPostWait: a Post and the Wait that dequeues it. No allocation.
func BenchmarkPostWait(b *testing.B) {
	forEachBackendBench(b, func(b *testing.B, name string) {
		p := openPort(b, name)
		w := p.Worker()
		defer w.Close()
		var batch [1]cport.Completion
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := p.Post(1, uint64(i), 0); err != nil {
				b.Fatal(err)
			}
			if _, err := w.Wait(batch[:], -1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecvSend: an echo over loopback, one 64-byte message per op:
// the client writes it, the server receives it and sends it back with Send.
func BenchmarkRecvSend(b *testing.B) {
	forEachBackendBench(b, func(b *testing.B, name string) {
		const size = 64
		p := openPort(b, name)
		l := listen(b, p, 1)
		runWorkers(b, p, 1, 16, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err == nil {
					c.Conn.RecvMulti(0)
				}
			case cport.OpRecv:
				if c.Err == nil {
					m := cport.MsgOf(c.Buf)
					c.Conn.Send(m, 1)
					m.Release()
				}
				c.Release()
			}
		})
		if err := l.Accept(0); err != nil {
			b.Fatal(err)
		}
		cl := dialOne(b, l.Addr())
		msg := make([]byte, size)
		reply := make([]byte, size)
		cl.SetDeadline(time.Now().Add(10 * time.Minute))
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cl.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(cl, reply); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFanout: one sender, 50 receivers: each op is one 64-byte Msg
// sent with SendQuiet to every receiver. Reported: ns and allocations per
// delivered message (ns/msg, allocs/msg) besides the per-op figures.
func BenchmarkFanout(b *testing.B) {
	forEachBackendBench(b, func(b *testing.B, name string) {
		const (
			receivers = 50
			size      = 64
			window    = 256 << 10 // bytes a receiver may lag behind
		)
		p := openPort(b, name)
		s := collect(b, p, 1)
		conns, clients := acceptN(b, p, s, receivers)
		var (
			got [receivers]atomic.Int64
			wg  sync.WaitGroup
		)
		for i, cl := range clients {
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := cl.Read(buf)
					got[i].Add(int64(n))
					if err != nil {
						return
					}
				}
			})
		}
		b.Cleanup(func() {
			for _, cl := range clients {
				cl.Close()
			}
			wg.Wait()
		})
		payload := make([]byte, size)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			m := cport.MsgOf(payload)
			for _, c := range conns {
				if err := c.SendQuiet(m); err != nil {
					b.Fatal(err)
				}
			}
			m.Release()
			if i%256 == 255 { // flow control: let the slowest catch up
				for _, c := range conns {
					for c.Queued() > window {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}
		}
		want := int64(b.N) * size
		for i := range got {
			for got[i].Load() < want {
				time.Sleep(50 * time.Microsecond)
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		delivered := float64(b.N) * receivers
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/delivered, "ns/msg")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/delivered, "allocs/msg")
	})
}
