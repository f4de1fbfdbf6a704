// Command cportecho is an echo server on the cport library: the
// completion-port counterpart of the echo servers in the published gnet
// benchmarks, for the echo scenario of the bench runner (cport serve is a
// broadcast server and has no echo mode). A new connection starts a
// multishot receive, and every receive is sent back as it came.
//
// By default the completions run where they complete (cport's
// Config.Handler: a receive is echoed by the engine goroutine that read
// it); with --model queue, workers dequeue them from the port, as in the
// tutorial's worker pool.
//
// Usage:
//
//	cportecho [--addr A] [--backend uring|epoll|portable] [--model handler|queue] [--workers N]
package main

import (
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"cport.dev/cport"
	"cport.dev/cport/bench/internal/peer"
)

const name = "cportecho"

func main() {
	o := peer.Parse(name, true)
	cfg := cport.Config{Backend: o.Backend, Concurrency: o.Workers}
	if !o.Queue {
		cfg.Handler = func(c cport.Completion) { handle(&c) }
	}
	p, err := cport.Open(cfg)
	if err != nil {
		peer.Fatal(name, err)
	}
	ln, err := p.Listen("tcp", o.Addr, 0)
	if err != nil {
		peer.Fatal(name, err)
	}
	if err := ln.AcceptMulti(0); err != nil {
		peer.Fatal(name, err)
	}
	model := "handler"
	if o.Queue {
		model = "queue"
	}
	peer.Listening(name+" ("+p.Backend()+", "+model+")", ln.Addr().String())
	if !o.Queue {
		// The engine's goroutines do the work until a signal ends it.
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
		p.Close()
		return
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { work(p) })
	}
	wg.Wait()
}

// work is a worker of the queue model.
func work(p *cport.Port) {
	w := p.Worker()
	defer w.Close()
	batch := make([]cport.Completion, 64)
	for {
		n, err := w.Wait(batch, -1)
		if err != nil {
			return // cport.ErrClosed
		}
		for i := range batch[:n] {
			handle(&batch[i])
		}
	}
}

// handle echoes a receive, starts receiving on a new connection, and
// closes one whose receive ended.
func handle(c *cport.Completion) {
	switch c.Op {
	case cport.OpAccept:
		if c.Err == nil {
			_ = c.Conn.RecvMulti(0)
		}
	case cport.OpRecv:
		if c.Err != nil {
			_ = c.Conn.Close()
		} else {
			m := cport.MsgOf(c.Buf)
			_ = c.Conn.SendQuiet(m)
			m.Release()
		}
		c.Release()
	}
}
