package cport_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceChurn: connections come and go in a row, in waves: a wave
// of clients connects and stays silent while the server's receives wait,
// then each client sends a line, reads its echo and closes, and the server
// closes each connection on its end of stream. While a wave waits, a
// silent connection pins no receive buffer; once every wave is gone, the
// port holds nothing: Conns() is 0, and the process's descriptors, the
// test's goroutines and the heap in use come back to what they were before
// the first connection (the heap within twice that, plus a little).
//
// Found by an outsider: under churn the portable engine's heap went to hundreds of
// megabytes, every silent connection's reading goroutine holding a receive
// buffer while blocked in Read (19,000 connected clients: 335 MiB).
func TestConformanceChurn(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, b string) {
		total, wave := 3000, 500
		if testing.Short() {
			total, wave = 500, 250
		}
		id := labelTest(t)
		p := openPort(t, b)
		var (
			armed, eofs atomic.Int64
			failed      atomic.Bool // by a worker or a client
			errorf      = limitErrors(t)
		)
		fail := func(format string, args ...any) {
			failed.Store(true)
			errorf(format, args...)
		}
		l := listen(t, p, 1)
		runWorkers(t, p, 2, 16, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					fail("accept: %v", c.Err)
					return
				}
				if err := c.Conn.RecvMulti(2); err != nil {
					fail("RecvMulti: %v", err)
					return
				}
				armed.Add(1)
			case cport.OpRecv:
				switch {
				case c.Err == nil:
					m := cport.MsgOf(c.Buf)
					if err := c.Conn.SendQuiet(m); err != nil {
						fail("SendQuiet: %v", err)
					}
					m.Release()
				case errors.Is(c.Err, io.EOF):
					eofs.Add(1)
					c.Conn.Close()
				case errors.Is(c.Err, cport.ErrCanceled): // closed by the port's Close
				default:
					fail("receive: %v", c.Err)
					c.Conn.Close()
				}
				c.Release()
			}
		})
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}

		// Baselines: the port open, listening and waited on; no connection yet.
		fds0 := openFDs(t)
		goroutines0, _ := labeledGoroutines(id)
		heap0 := heapInuse()
		t.Logf("baseline: %d descriptors, %d goroutines of the test, heap in use %.1f MiB", fds0, goroutines0, float64(heap0)/mib)

		line := []byte("churn churn churn\n")
		for done := 0; done < total; done += wave {
			n := min(wave, total-done)
			clients := dial(t, l.Addr(), n)
			eventually(t, fmt.Sprintf("%d receives waiting", done+n), func() bool { return armed.Load() == int64(done+n) })

			// A silent connection holds its structures, client and server
			// side (a few KiB), and no receive buffer (16 KiB each).
			if done == 0 {
				per := (int64(heapInuse()) - int64(heap0)) / int64(n)
				t.Logf("%d silent connections: heap in use %d bytes per connection", n, per)
				switch limit := int64(cport.DefaultRecvBufferSize / 2); {
				case per <= limit:
				case b == "portable" && runtime.GOOS == "windows":
					// Known: there the portable engine's reading goroutine
					// holds its buffer while blocked in Read (see its
					// read_other.go); iocp is Windows' engine.
					t.Logf("portable on Windows: %d bytes per silent connection (a receive buffer each)", per)
				default:
					t.Errorf("%d silent connections hold %d bytes of heap each; want under %d: a receive waiting for data must pin no buffer", n, per, limit)
				}
			}

			var wg sync.WaitGroup
			const drivers = 8
			for d := range drivers {
				wg.Go(func() {
					for i := d; i < n; i += drivers {
						cl := clients[i]
						cl.SetWriteDeadline(time.Now().Add(longWait))
						if _, err := cl.Write(line); err != nil {
							fail("client %d: write: %v", done+i, err)
						} else if got, err := readN(cl, len(line)); err != nil || string(got) != string(line) {
							fail("client %d: read %q, %v; want %q", done+i, got, err, line)
						}
						cl.Close()
						clients[i] = nil
					}
				})
			}
			wg.Wait()
			if failed.Load() {
				t.FailNow()
			}
		}

		eventually(t, fmt.Sprintf("%d ends of stream", total), func() bool { return eofs.Load() == int64(total) })
		eventually(t, "Port.Conns() to drop to 0", func() bool { return p.Conns() == 0 })
		if runtime.GOOS == "linux" {
			waitFor(t, "the process's descriptors to come back to their baseline", func() (bool, string) {
				n := openFDs(t)
				return n <= fds0, fmt.Sprintf("%d open; %d before", n, fds0)
			})
		}
		waitFor(t, "the test's goroutines to come back to their baseline", func() (bool, string) {
			n, stacks := labeledGoroutines(id)
			return n <= goroutines0, fmt.Sprintf("%d; %d before:\n%s", n, goroutines0, stacks)
		})
		// The heap may keep a little for good (a goroutine's descriptor,
		// grown tables): twice the baseline plus 4 MiB is nothing like
		// thousands of connections' worth.
		waitFor(t, "the heap in use to come back near its baseline", func() (bool, string) {
			h := heapInuse()
			return h <= 2*heap0+4*mib, fmt.Sprintf("%.1f MiB; %.1f MiB before", float64(h)/mib, float64(heap0)/mib)
		})
		g, _ := labeledGoroutines(id)
		t.Logf("after %d connections: %d descriptors, %d goroutines of the test, heap in use %.1f MiB", total, openFDs(t), g, float64(heapInuse())/mib)
	})
}

// openFDs returns how many descriptors the process has open (Linux; 0
// elsewhere).
func openFDs(t testing.TB) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return 0
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(fds) - 1 // the directory's own, open while it is read
}

// heapInuse returns the heap in use after a garbage collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// waitFor polls cond until it holds, failing t after longWait with what
// cond last said.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %s", longWait, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
