// Package models is the I/O-models experiment behind "cport models": it
// measures the tutorial's four claims about select, completion ports and
// thread-per-connection servers on this machine, model by model (select,
// poll, epoll, io_uring, and Go's net as the goroutine-per-connection
// model), and writes docs/models/RESULTS.md (see METHOD there).
//
// Each model runs as a child process (Serve, "cport models serve"), an echo
// server, so that its CPU time, memory and context switches come from /proc
// alone: select and poll are the tutorial's loops written directly
// (package models/readiness: one thread blocked in select(2) or poll(2)
// over every socket); epoll, io_uring and goroutine-per-connection are
// cport's epoll, uring and portable engines, on a cport.Port. The driver
// (Run) holds N idle connections to it, drives K active clients at a fixed
// rate and samples the child.
//
// Why an echo server and not the chat relay: the relay sends every message
// to every client, idle ones included, so its cost per message is O(N) in
// every model and hides the cost the tutorial talks about, the cost of a
// wake-up while N sockets are watched. An echo server does one read and one
// write per message whatever N is; what grows with N is only what the model
// itself makes grow.
package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"runtime"
	"sync"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/models/readiness"
)

// Serve runs the echo server of a model's backend until ctx ends: every
// byte a client sends is written back to that client. Backends "select" and
// "poll" are the servers of package models/readiness (Linux only); any other
// is a cport engine, served on a cport.Port. ready is called with the
// listening address once it accepts. Failed accepts (select past
// FD_SETSIZE, EMFILE) are logged to logw once and accepting goes on.
func Serve(ctx context.Context, backend, addr string, logw io.Writer, ready func(addr string)) error {
	lg := log.New(logw, "models serve: ", 0)
	switch backend {
	case "select", "poll":
		return readiness.Serve(ctx, backend, addr, lg, ready)
	}
	p, err := cport.Open(cport.Config{Backend: backend})
	if err != nil {
		return err
	}
	defer p.Close()
	l, err := p.Listen("tcp4", addr, 1)
	if err != nil {
		return err
	}
	if err := l.AcceptMulti(0); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var once sync.Once
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoWorker(p, lg, &once)
		}()
	}
	ready(l.Addr().String())
	<-ctx.Done()
	p.Close()
	wg.Wait()
	return nil
}

func echoWorker(p *cport.Port, lg *log.Logger, once *sync.Once) {
	w := p.Worker()
	defer w.Close()
	batch := make([]cport.Completion, 64)
	for {
		n, err := w.Wait(batch, -1)
		if err != nil {
			return // ErrClosed
		}
		for i := range batch[:n] {
			c := &batch[i]
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					if !errors.Is(c.Err, cport.ErrCanceled) {
						once.Do(func() { lg.Printf("accept: %v (logged once)", c.Err) })
					}
					continue
				}
				c.Conn.RecvMulti(0)
			case cport.OpRecv:
				if c.Err != nil {
					c.Conn.Close()
					continue
				}
				m := cport.MsgOf(c.Buf)
				c.Release()
				c.Conn.SendQuiet(m)
				m.Release()
			}
		}
	}
}

// errSkip marks a point the model or the machine cannot run.
type errSkip struct{ why string }

func (e errSkip) Error() string { return e.why }

func skipf(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
