package cport_test

// Timers of the port (Port.Timer), on every engine: they complete on the
// port, as completions of op OpTimer.

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

func isTimer(tag uint64) func(*cport.Completion) bool {
	return func(c *cport.Completion) bool { return c.Op == cport.OpTimer && c.Tag == tag }
}

// TestConformanceTimer: a timer completes on the port with its key and
// tag, no connection and no error, once its duration has passed; a zero
// duration too.
func TestConformanceTimer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 2)
		start := time.Now()
		const d = 50 * time.Millisecond
		if _, err := p.Timer(d, 7, 77); err != nil {
			t.Fatalf("Timer: %v", err)
		}
		c := s.take(t, "timer", isTimer(77))
		if took := time.Since(start); took < d {
			t.Errorf("the timer of %v completed after %v", d, took)
		}
		if c.Key != 7 || c.Err != nil || c.Conn != nil || c.N != 0 || c.Op.String() != "timer" {
			t.Errorf("timer completion %s, Conn %v; want key 7, tag 77, nothing else", describe(&c), c.Conn)
		}
		if _, err := p.Timer(0, 8, 88); err != nil {
			t.Fatalf("Timer(0): %v", err)
		}
		s.take(t, "timer of zero duration", isTimer(88))
	})
}

// TestConformanceTimerStop: a timer stopped before it expires never
// completes, and only the first Stop reports stopping it; a timer that
// expired cannot be stopped.
func TestConformanceTimerStop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		tm, err := p.Timer(grace/2, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		long, err := p.Timer(time.Hour, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !tm.Stop() {
			// The machine was slow enough for the timer to expire
			// first: then its completion must come.
			s.take(t, "the timer Stop did not stop", isTimer(1))
		} else {
			s.none(t, "a stopped timer's", isTimer(1))
		}
		if tm.Stop() {
			t.Errorf("a second Stop reported stopping the timer")
		}
		if !long.Stop() || long.Stop() {
			t.Errorf("Stop of an hour's timer: want true, then false")
		}
		fired, err := p.Timer(0, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		s.take(t, "timer", isTimer(3))
		if fired.Stop() {
			t.Errorf("Stop of a timer whose completion came reported stopping it")
		}
		s.none(t, "a stopped timer's", isOp(cport.OpTimer))
	})
}

// TestConformanceTimerStopRace: timers stopped from other goroutines as
// they expire: each either completes once or is stopped (Stop true),
// never both, never neither.
func TestConformanceTimerStopRace(t *testing.T) {
	const n = 2000
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		var (
			mu        sync.Mutex
			delivered = make([]int, n)
			count     atomic.Int64
		)
		runWorkers(t, p, 2, 16, func(c *cport.Completion) {
			if c.Op != cport.OpTimer || c.Tag >= n {
				t.Errorf("unexpected completion %s", describe(c))
				return
			}
			mu.Lock()
			delivered[c.Tag]++
			mu.Unlock()
			count.Add(1)
		})
		timers := make([]*cport.Timer, n)
		for i := range n {
			tm, err := p.Timer(time.Duration(rand.IntN(20))*time.Millisecond, 1, uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			timers[i] = tm
		}
		stopped := make([]bool, n)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := g; i < n; i += 4 {
					if i%16 == 0 {
						time.Sleep(time.Millisecond) // pace: stop some early, some late
					}
					stopped[i] = timers[i].Stop()
				}
			})
		}
		wg.Wait()
		nstopped := 0
		for _, s := range stopped {
			if s {
				nstopped++
			}
		}
		eventually(t, "every timer not stopped to complete", func() bool { return count.Load() >= int64(n-nstopped) })
		time.Sleep(grace) // absence check: no completion of a stopped timer comes late
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			if want := map[bool]int{true: 0, false: 1}[stopped[i]]; delivered[i] != want {
				t.Fatalf("timer %d: Stop %v, %d completions; want %d", i, stopped[i], delivered[i], want)
			}
		}
		t.Logf("%d timers stopped, %d completed", nstopped, n-nstopped)
	})
}

// TestConformanceTimerOrder: timers expire in the order of their expiry,
// whatever the order they were started in.
func TestConformanceTimerOrder(t *testing.T) {
	const (
		n    = 50
		step = 20 * time.Millisecond
	)
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1) // one worker: the queue's order is the sink's
		base := time.Now().Add(300 * time.Millisecond)
		for _, i := range rand.Perm(n) {
			d := max(time.Until(base.Add(time.Duration(i)*step)), 0)
			if _, err := p.Timer(d, 1, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			c := s.take(t, "timer", isOp(cport.OpTimer))
			if c.Tag != uint64(i) {
				t.Fatalf("timer %d completed %dth; want them in the order of their expiry", c.Tag, i)
			}
		}
	})
}

// TestConformanceTimerMany: ten thousand timers pending at once, which
// cost no goroutine each, all complete, each once.
func TestConformanceTimerMany(t *testing.T) {
	const n = 10000
	forEachBackendSerial(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		var (
			mu   sync.Mutex
			seen = make([]bool, n)
			dup  int
			got  atomic.Int64
		)
		runWorkers(t, p, 2, 64, func(c *cport.Completion) {
			mu.Lock()
			if seen[c.Tag] {
				dup++
			}
			seen[c.Tag] = true
			mu.Unlock()
			got.Add(1)
		})
		before := runtime.NumGoroutine()
		for i := range n {
			if _, err := p.Timer(time.Second+time.Duration(rand.IntN(500))*time.Millisecond, 1, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		// A goroutine per timer would show here, the timers still pending
		// (other tests' goroutines come and go: a wide margin).
		if during := runtime.NumGoroutine(); during > before+n/10 {
			t.Errorf("%d goroutines with %d timers pending, %d before", during, n, before)
		}
		eventually(t, "every timer to complete", func() bool { return got.Load() >= n })
		time.Sleep(grace) // absence check: no timer completes twice
		mu.Lock()
		defer mu.Unlock()
		if dup != 0 || got.Load() != n {
			t.Errorf("%d completions, %d duplicates; want %d, none", got.Load(), dup, n)
		}
	})
}

// TestConformanceTimerPortClose: Port.Close ends the timers pending: none
// completes after it, Stop no longer stops them; Timer on a closed port
// is ErrClosed, and a negative duration is an error.
func TestConformanceTimerPortClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		var (
			closed atomic.Bool
			late   atomic.Int64
		)
		p := openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
			if closed.Load() {
				late.Add(1)
			}
		}})
		if _, err := p.Timer(-time.Second, 1, 1); err == nil {
			t.Errorf("Timer with a negative duration succeeded")
		}
		var timers []*cport.Timer
		for i := range 1000 {
			d := time.Duration(i%50) * time.Millisecond
			if i%2 == 0 {
				d = time.Hour
			}
			tm, err := p.Timer(d, 1, uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			timers = append(timers, tm)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		closed.Store(true)
		for i, tm := range timers {
			if tm.Stop() {
				t.Fatalf("Stop of timer %d after Port.Close reported stopping it", i)
			}
		}
		if _, err := p.Timer(time.Millisecond, 1, 1); !errors.Is(err, cport.ErrClosed) {
			t.Errorf("Timer on a closed port = %v; want ErrClosed", err)
		}
		time.Sleep(grace) // absence check: nothing completes after Close
		if n := late.Load(); n != 0 {
			t.Errorf("%d timer completions after Port.Close", n)
		}
	})
}

// TestConformanceTimerHandler: on a port with Config.Handler, the handler
// runs timer completions, and a timer started in the handler completes
// too.
func TestConformanceTimerHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		done := make(chan cport.Completion, 2)
		var p *cport.Port
		p = openPort(t, b, cport.Config{Handler: func(c cport.Completion) {
			if c.Op != cport.OpTimer {
				return
			}
			if c.Tag == 1 {
				if _, err := p.Timer(time.Millisecond, 2, 2); err != nil {
					t.Errorf("Timer in the handler: %v", err)
				}
			}
			done <- c
		}})
		if _, err := p.Timer(10*time.Millisecond, 1, 1); err != nil {
			t.Fatal(err)
		}
		for want := uint64(1); want <= 2; want++ {
			select {
			case c := <-done:
				if c.Tag != want || c.Key != want {
					t.Errorf("handler got %s; want the timer of tag %d", describe(&c), want)
				}
			case <-time.After(longWait):
				t.Fatalf("waited %v for timer %d in the handler", longWait, want)
			}
		}
	})
}
