package cport

import "time"

// A Worker dequeues completions from its port, like a thread blocked in
// GetQueuedCompletionStatus. Any number of workers may wait on one port;
// each completion goes to exactly one of them. A Worker is used by one
// goroutine at a time.
//
// The port's concurrency cap counts workers: a worker is running from the
// moment its Wait returns completions until it calls Wait again or Close.
// While Concurrency workers are running, others wait even if completions are
// queued, as on an I/O completion port.
type Worker struct {
	p       *Port
	running bool          // guarded by p.q.mu
	wake    chan struct{} // capacity 1: a token means "look at the queue again"
	timer   *time.Timer   // reused for timed waits; owned by the worker's goroutine
}

// Worker returns a new worker of p.
func (p *Port) Worker() *Worker {
	return &Worker{p: p, wake: make(chan struct{}, 1)}
}

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Wait dequeues up to len(batch) completions into batch and returns how many,
// blocking until at least one is queued and the concurrency cap lets this
// worker run (GetQueuedCompletionStatusEx). A negative timeout waits for
// ever; zero only polls. It returns ErrTimeout when the timeout passes and
// ErrClosed once the port is closed, and ErrHandler at once on a port with
// a Config.Handler. batch must not be empty.
func (w *Worker) Wait(batch []Completion, timeout time.Duration) (int, error) {
	if len(batch) == 0 {
		panic("cport: Wait with an empty batch")
	}
	q := &w.p.q
	if q.handler != nil {
		return 0, ErrHandler
	}
	if w.running {
		w.p.eng.Submit() // the batch just handled may have queued work
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	q.mu.Lock()
	if w.running {
		w.running = false
		q.running.Add(-1)
		q.wakeLocked()
	}
	for {
		if q.closed {
			q.mu.Unlock()
			return 0, ErrClosed
		}
		if q.n > 0 && int(q.running.Load()) < q.limit {
			k := q.popLocked(batch)
			w.running = true
			q.running.Add(1)
			q.wakeLocked() // more left, and room for another worker
			q.mu.Unlock()
			return k, nil
		}
		if timeout == 0 {
			q.mu.Unlock()
			return 0, ErrTimeout
		}
		q.waiters = append(q.waiters, w)
		q.mu.Unlock()
		if !w.sleep(deadline) {
			q.mu.Lock()
			if !q.removeWaiterLocked(w) {
				w.drain() // signalled while timing out: drop the stale token
			}
			timeout = 0 // one last look at the queue, then time out
			continue
		}
		q.mu.Lock()
	}
}

// WaitOne dequeues a single completion (GetQueuedCompletionStatus).
func (w *Worker) WaitOne(timeout time.Duration) (Completion, error) {
	var one [1]Completion
	if _, err := w.Wait(one[:], timeout); err != nil {
		return Completion{}, err
	}
	return one[0], nil
}

// Close tells the port that w no longer runs completions, freeing its place
// under the concurrency cap. A worker that stops for good calls it; calling
// Wait again later is allowed.
func (w *Worker) Close() {
	q := &w.p.q
	if w.running {
		w.p.eng.Submit()
	}
	q.mu.Lock()
	if w.running {
		w.running = false
		q.running.Add(-1)
		q.wakeLocked()
	}
	q.mu.Unlock()
}

// sleep blocks until signalled (true) or until deadline passes (false); a
// zero deadline never passes.
func (w *Worker) sleep(deadline time.Time) bool {
	if deadline.IsZero() {
		<-w.wake
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	select {
	case <-w.wake:
		w.timer.Stop()
		return true
	case <-w.timer.C:
		return false
	}
}

func (w *Worker) drain() {
	select {
	case <-w.wake:
	default:
	}
}
