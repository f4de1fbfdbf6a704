// Command cportecho is an echo server on the cport library: the
// completion-port counterpart of the echo servers in the published gnet
// benchmarks, for the echo scenario of the bench runner (cport serve is a
// broadcast server and has no echo mode). Workers dequeue completions: a new
// connection starts a multishot receive, and every receive is sent back as
// it came.
//
// Usage:
//
//	cportecho [--addr A] [--backend uring|epoll|portable] [--workers N]
package main

import (
	"runtime"
	"sync"

	"cport.dev/cport"
	"cport.dev/cport/bench/internal/peer"
)

const name = "cportecho"

func main() {
	o := peer.Parse(name, true)
	p, err := cport.Open(cport.Config{Backend: o.Backend, Concurrency: o.Workers})
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
	peer.Listening(name+" ("+p.Backend()+")", ln.Addr().String())
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
			c := &batch[i]
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
	}
}
