package cport_test

import (
	"runtime"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceBroadcastAllocs: one message sent to many idle
// connections at once (a chat server's broadcast) costs no allocation per
// connection beyond the send queue's first slot, and reaches every one. The uring engine took a
// sendmsg header and its arrays for every connection, 3 allocations (324 B)
// each when thousands sent at once; a send of one buffer needs none.
func TestConformanceBroadcastAllocs(t *testing.T) {
	const n = 1500 // more than the uring engine keeps sendmsg headers for (1,024)
	forEachBackendSerial(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		conns, clients := acceptN(t, p, s, n)
		payload := []byte("hello")
		broadcast := func() {
			m := cport.MsgOf(payload)
			for _, c := range conns {
				m.Ref()
				if err := c.SendQuiet(m); err != nil {
					t.Fatalf("SendQuiet: %v", err)
				}
			}
			m.Release()
		}
		written := func(k int64) {
			deadline := time.Now().Add(longWait)
			for _, c := range conns {
				for c.Written() < k*int64(len(payload)) {
					if time.Now().After(deadline) {
						t.Fatalf("a connection wrote %d bytes; want %d", c.Written(), k*int64(len(payload)))
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
		broadcast() // the send queues' first slots
		written(1)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		broadcast()
		written(2)
		runtime.ReadMemStats(&m1)
		per := float64(m1.Mallocs-m0.Mallocs) / n
		t.Logf("%s: %.2f allocations, %.0f B per connection", b, per, float64(m1.TotalAlloc-m0.TotalAlloc)/n)
		switch {
		case b == "portable":
			// Not checked: the portable engine writes with a goroutine per
			// write (Go's net has no readiness to wait on), and Go's net
			// allocates in its own writev on some systems (2 per connection
			// on Linux, 3.5 on Windows, measured 2026-12-06).
		case per >= 1:
			t.Errorf("%.2f allocations per connection for a broadcast; want less than one", per)
		}
		for _, cl := range clients {
			if got, err := readN(cl, 2*len(payload)); err != nil || string(got) != "hellohello" {
				t.Fatalf("client read %q, %v; want the two broadcasts", got, err)
			}
		}
	})
}
