package cport_test

import (
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceWorkersExactlyOnce: many Posts from several goroutines,
// dequeued by several workers in batches: each is delivered exactly once,
// with its key, tag and count, and a batch holds 1..len(batch).
func TestConformanceWorkersExactlyOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		const (
			workers  = 8
			posters  = 4
			perPoser = 12_500 // 50k in all
			total    = posters * perPoser
		)
		p := openPort(t, b)
		var (
			seen      = make([]atomic.Int32, total)
			delivered atomic.Int64
		)
		errorf := limitErrors(t)
		for w := range workers {
			batch := 1 + w*3 // 1, 4, ... 22: single and batched waits
			runWorkers(t, p, 1, batch, func(c *cport.Completion) {
				if c.Op != cport.OpPost || c.Tag >= total || c.Key != c.Tag%7 || c.N != int(c.Tag%1000) || c.Err != nil {
					errorf("bad completion %s", describe(c))
					return
				}
				if seen[c.Tag].Add(1) != 1 {
					errorf("tag %d delivered twice", c.Tag)
				}
				delivered.Add(1)
			})
		}
		var wg sync.WaitGroup
		for g := range posters {
			wg.Go(func() {
				for i := range perPoser {
					tag := uint64(g*perPoser + i)
					if err := p.Post(tag%7, tag, int(tag%1000)); err != nil {
						t.Errorf("Post: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		eventually(t, "every post to be delivered", func() bool { return delivered.Load() >= total })
		// Absence check: nothing is delivered twice, late.
		time.Sleep(grace)
		if n := delivered.Load(); n != total {
			t.Errorf("%d deliveries of %d posts", n, total)
		}
		for i := range seen {
			if n := seen[i].Load(); n != 1 {
				t.Fatalf("tag %d delivered %d times", i, n)
			}
		}
	})
}

// TestConformanceWaitTimeout: Wait with timeout 0 on an empty queue polls
// and returns ErrTimeout; a small timeout expires with ErrTimeout; neither
// loses a completion posted later.
func TestConformanceWaitTimeout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		w := p.Worker()
		defer w.Close()
		var batch [4]cport.Completion
		// Run in a goroutine: a Wait(0) that blocked would hang the test.
		done := make(chan error, 1)
		go func() {
			n, err := w.Wait(batch[:], 0)
			if n != 0 {
				err = errors.New("got completions from an empty port")
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, cport.ErrTimeout) {
				t.Errorf("Wait(0) on an empty port = %v; want ErrTimeout", err)
			}
		case <-time.After(longWait):
			t.Fatal("Wait(0) on an empty port blocked")
		}
		for _, d := range []time.Duration{time.Nanosecond, time.Millisecond, 20 * time.Millisecond} {
			if n, err := w.Wait(batch[:], d); n != 0 || !errors.Is(err, cport.ErrTimeout) {
				t.Errorf("Wait(%v) on an empty port = %d, %v; want ErrTimeout", d, n, err)
			}
		}
		if _, err := w.WaitOne(time.Millisecond); !errors.Is(err, cport.ErrTimeout) {
			t.Errorf("WaitOne(1ms) on an empty port = %v; want ErrTimeout", err)
		}
		// A completion posted after timeouts is still delivered, also to a
		// poll.
		if err := p.Post(1, 2, 3); err != nil {
			t.Fatal(err)
		}
		n, err := w.Wait(batch[:], 0)
		if err != nil || n != 1 || batch[0].Op != cport.OpPost || batch[0].Tag != 2 {
			t.Fatalf("Wait(0) with a post queued = %d, %v (%s)", n, err, describe(&batch[0]))
		}
		if err := p.Post(1, 3, 0); err != nil {
			t.Fatal(err)
		}
		c, err := w.WaitOne(time.Millisecond)
		if err != nil || c.Tag != 3 {
			t.Fatalf("WaitOne(1ms) with a post queued = %s, %v", describe(&c), err)
		}
		// Again empty.
		if n, err := w.Wait(batch[:], 0); n != 0 || !errors.Is(err, cport.ErrTimeout) {
			t.Errorf("Wait(0) on a drained port = %d, %v; want ErrTimeout", n, err)
		}
	})
}

// TestConformanceWaitBlocks: Wait(-1) blocks until a Post arrives.
func TestConformanceWaitBlocks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		type result struct {
			c   cport.Completion
			err error
		}
		got := make(chan result, 1)
		go func() {
			w := p.Worker()
			defer w.Close()
			c, err := w.WaitOne(-1)
			got <- result{c, err}
		}()
		// Absence check: with nothing posted, the waiter stays blocked.
		select {
		case r := <-got:
			t.Fatalf("Wait(-1) returned %s, %v with nothing posted", describe(&r.c), r.err)
		case <-time.After(grace):
		}
		if err := p.Post(5, 6, 7); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r.err != nil || r.c.Op != cport.OpPost || r.c.Key != 5 || r.c.Tag != 6 || r.c.N != 7 {
				t.Errorf("Wait(-1) = %s, %v; want the post (5, 6, 7)", describe(&r.c), r.err)
			}
		case <-time.After(longWait):
			t.Fatal("Wait(-1) did not return after a Post")
		}
	})
}

// TestConformanceWaitEmptyBatch: Wait with an empty batch panics.
func TestConformanceWaitEmptyBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		w := p.Worker()
		defer func() {
			if recover() == nil {
				t.Error("Wait with an empty batch did not panic")
			}
		}()
		w.Wait(nil, 0)
	})
}

// TestConformanceConcurrencyDefault: the default cap is GOMAXPROCS.
func TestConformanceConcurrencyDefault(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		if got, want := p.Concurrency(), runtime.GOMAXPROCS(0); got != want {
			t.Errorf("default Concurrency() = %d; want GOMAXPROCS %d", got, want)
		}
		p3 := openPort(t, b, cport.Config{Concurrency: 3})
		if got := p3.Concurrency(); got != 3 {
			t.Errorf("Concurrency() = %d; want 3 as configured", got)
		}
	})
}

// asyncWait runs one Wait of w with a batch of one in a goroutine.
type asyncWait struct {
	done chan struct{}
	c    cport.Completion
	err  error
}

func startWait(w *cport.Worker, timeout time.Duration) *asyncWait {
	a := &asyncWait{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.c, a.err = w.WaitOne(timeout)
	}()
	return a
}

// returned reports whether the Wait returned, waiting up to d for it.
func (a *asyncWait) returned(d time.Duration) bool {
	select {
	case <-a.done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestConformanceConcurrencyCap: while Concurrency workers run, another
// worker does not get a queued completion; it gets it once a running worker
// closes or waits again.
func TestConformanceConcurrencyCap(t *testing.T) {
	for _, limit := range []int{1, 2} {
		t.Run("concurrency="+strconv.Itoa(limit), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b string) {
				p := openPort(t, b, cport.Config{Concurrency: limit})
				running := make([]*cport.Worker, limit)
				for i := range running {
					running[i] = p.Worker()
				}
				late := p.Worker()
				for i := range limit + 1 {
					if err := p.Post(0, uint64(i), 0); err != nil {
						t.Fatal(err)
					}
				}
				// The first limit workers take one each and are running.
				for i, w := range running {
					c, err := w.WaitOne(longWait)
					if err != nil || c.Op != cport.OpPost {
						t.Fatalf("worker %d: WaitOne = %s, %v", i, describe(&c), err)
					}
				}
				// A completion is queued, but the cap is reached.
				if c, err := late.WaitOne(20 * time.Millisecond); !errors.Is(err, cport.ErrTimeout) {
					t.Fatalf("WaitOne while %d workers run = %s, %v; want ErrTimeout (Concurrency %d)", limit, describe(&c), err, limit)
				}
				if n, err := late.Wait(make([]cport.Completion, 4), 0); !errors.Is(err, cport.ErrTimeout) {
					t.Fatalf("Wait(0) while %d workers run = %d, %v; want ErrTimeout", limit, n, err)
				}
				// Blocked: absence check while the running workers run.
				a := startWait(late, -1)
				if a.returned(grace) {
					t.Fatalf("Wait returned %s, %v while %d workers run (Concurrency %d)", describe(&a.c), a.err, limit, limit)
				}
				// A running worker stops: the blocked one gets the completion.
				running[0].Close()
				if !a.returned(longWait) {
					t.Fatal("the blocked worker got nothing after a running worker closed")
				}
				if a.err != nil || a.c.Op != cport.OpPost || a.c.Tag != uint64(limit) {
					t.Fatalf("blocked worker's Wait = %s, %v; want the last post", describe(&a.c), a.err)
				}
				// Now late runs and the cap is reached again.
				if err := p.Post(0, 100, 0); err != nil {
					t.Fatal(err)
				}
				if c, err := running[0].WaitOne(20 * time.Millisecond); !errors.Is(err, cport.ErrTimeout) {
					t.Fatalf("WaitOne with the cap reached = %s, %v; want ErrTimeout", describe(&c), err)
				}
				// A running worker that waits again leaves its place, and the
				// completion goes to exactly one of the waiters: that one or
				// another one, blocked.
				blocked := startWait(running[0], longWait)
				if blocked.returned(grace) { // absence check
					t.Fatalf("Wait returned %s, %v with the cap reached", describe(&blocked.c), blocked.err)
				}
				again := startWait(late, longWait)
				var winner, loser *asyncWait
				var winnerW, loserW *cport.Worker
				select {
				case <-again.done:
					winner, loser, winnerW, loserW = again, blocked, late, running[0]
				case <-blocked.done:
					winner, loser, winnerW, loserW = blocked, again, running[0], late
				case <-time.After(longWait):
					t.Fatal("neither waiter got the post after a running worker waited again")
				}
				if winner.err != nil || winner.c.Tag != 100 {
					t.Fatalf("Wait = %s, %v; want post 100", describe(&winner.c), winner.err)
				}
				if loser.returned(grace) { // absence check
					t.Fatalf("both waiters returned: %s, %v", describe(&loser.c), loser.err)
				}
				// The cap is reached again; the winner closes and the loser
				// gets the next post.
				if err := p.Post(0, 101, 0); err != nil {
					t.Fatal(err)
				}
				if loser.returned(grace) { // absence check
					t.Fatalf("Wait returned %s, %v with the cap reached", describe(&loser.c), loser.err)
				}
				winnerW.Close()
				if !loser.returned(longWait) || loser.err != nil || loser.c.Tag != 101 {
					t.Fatalf("blocked Wait after the running worker closed = %s, %v; want post 101", describe(&loser.c), loser.err)
				}
				loserW.Close()
				for _, w := range running {
					w.Close()
				}
				late.Close()
			})
		})
	}
}

// TestConformanceConcurrencyHandoff: with Concurrency 1, two workers and
// two posts: A takes one; B, blocked, gets the other once A closes, and A's
// place is free again after B closes.
func TestConformanceConcurrencyHandoff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b, cport.Config{Concurrency: 1})
		A, B := p.Worker(), p.Worker()
		if err := p.Post(0, 1, 0); err != nil {
			t.Fatal(err)
		}
		if err := p.Post(0, 2, 0); err != nil {
			t.Fatal(err)
		}
		c, err := A.WaitOne(longWait)
		if err != nil || c.Tag != 1 {
			t.Fatalf("A: %s, %v; want post 1 (posts are dequeued in order)", describe(&c), err)
		}
		if c, err := B.WaitOne(50 * time.Millisecond); !errors.Is(err, cport.ErrTimeout) {
			t.Fatalf("B while A runs: %s, %v; want ErrTimeout", describe(&c), err)
		}
		a := startWait(B, longWait)
		A.Close()
		if !a.returned(longWait) || a.err != nil || a.c.Tag != 2 {
			t.Fatalf("B after A closed: %s, %v; want post 2", describe(&a.c), a.err)
		}
		// B runs now: A waits.
		if err := p.Post(0, 3, 0); err != nil {
			t.Fatal(err)
		}
		if c, err := A.WaitOne(50 * time.Millisecond); !errors.Is(err, cport.ErrTimeout) {
			t.Fatalf("A while B runs: %s, %v; want ErrTimeout", describe(&c), err)
		}
		// B waiting again gets it itself (its place is free, the post queued).
		c, err = B.WaitOne(longWait)
		if err != nil || c.Tag != 3 {
			t.Fatalf("B waiting again: %s, %v; want post 3", describe(&c), err)
		}
		B.Close()
		if err := p.Post(0, 4, 0); err != nil {
			t.Fatal(err)
		}
		c, err = A.WaitOne(longWait)
		if err != nil || c.Tag != 4 {
			t.Fatalf("A after B closed: %s, %v; want post 4", describe(&c), err)
		}
		A.Close()
	})
}

// TestConformanceConcurrencyTimeoutNotRunning: a worker whose Wait timed
// out does not count as running.
func TestConformanceConcurrencyTimeoutNotRunning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b, cport.Config{Concurrency: 1})
		A, B := p.Worker(), p.Worker()
		if err := p.Post(0, 1, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := A.WaitOne(longWait); err != nil {
			t.Fatal(err)
		}
		if _, err := A.WaitOne(time.Millisecond); !errors.Is(err, cport.ErrTimeout) {
			t.Fatalf("A's second wait = %v; want ErrTimeout", err)
		}
		// A is not running any more: B gets a new post.
		if err := p.Post(0, 2, 0); err != nil {
			t.Fatal(err)
		}
		c, err := B.WaitOne(longWait)
		if err != nil || c.Tag != 2 {
			t.Fatalf("B: %s, %v; want post 2", describe(&c), err)
		}
		B.Close()
	})
}

// TestConformancePostWaitAllocs: a Post and Wait round trip allocates
// nothing. (Serial: AllocsPerRun counts the whole process's allocations.)
func TestConformancePostWaitAllocs(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		w := p.Worker()
		defer w.Close()
		var batch [1]cport.Completion
		allocs := testing.AllocsPerRun(1000, func() {
			if err := p.Post(1, 2, 3); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Wait(batch[:], -1); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Post + Wait allocates %v times; want 0", allocs)
		}
	})
}
