package cport

import (
	"errors"
	"fmt"
	"slices"
)

// backend is the contract every engine meets. The Port, Conn and Listener
// types hold the logic common to all (queues, send accounting, the order of
// receives); a backend moves bytes and reports back through them:
//
//   - Conn.deliverRecv for data or the end of a receive,
//   - Conn.sendBatch and Conn.sendDone around each write,
//   - Port.accepted and Listener.acceptFailed for accepts.
//
// Each method is called without Conn.mu or Port.mu held.
type backend interface {
	// listen opens a listening socket for l.
	listen(l *Listener, network, address string) error
	// accept starts accepting on l (l.multi says whether to keep going).
	accept(l *Listener) error
	// closeListener closes l's socket; a pending accept completes with
	// ErrCanceled.
	closeListener(l *Listener)
	// recv arms a receive on c (c.recvMulti says whether to keep going).
	recv(c *Conn) error
	// recvReleased is told that c's receive completion was released.
	recvReleased(c *Conn, b *recvBuf)
	// flush starts writing c's send queue, which became non-empty while no
	// write was in flight. An engine may defer the write to coalesce more
	// messages into it, until its next submit or its own loop comes round,
	// but not indefinitely.
	flush(c *Conn)
	// submit is called by a worker that finished a batch of completions,
	// before it waits again: the moment to start what the batch queued
	// (deferred writes, prepared submissions) in as few system calls as
	// possible.
	submit()
	// closeConn closes c's socket; pending operations complete with
	// ErrCanceled.
	closeConn(c *Conn)
	// close stops the engine and waits for its goroutines to end.
	close()
}

// A backendInfo describes an engine of this build.
type backendInfo struct {
	name string
	// rank orders the engines for "auto", best (lowest) first; engines
	// with a negative rank are never chosen by "auto".
	rank int
	// open starts the engine for p, or says why it cannot run here
	// (wrapping ErrUnavailable).
	open func(p *Port) (backend, error)
}

// Ranks of the engines.
const (
	rankKernel   = 10 // a kernel completion interface: io_uring, IOCP
	rankPoller   = 20 // readiness turned into completions: epoll
	rankPortable = 90 // Go's net package
	rankNever    = -1 // experiments only (poll, select)
)

// backendOrder lists the engines of this build, best first. OS-specific
// files add theirs with registerBackend, in init.
var backendOrder = []backendInfo{{name: "portable", rank: rankPortable, open: openPortable}}

// registerBackend adds an engine in rank order, the never-automatic ones
// last.
func registerBackend(b backendInfo) {
	key := func(b backendInfo) int {
		if b.rank < 0 {
			return 1 << 30
		}
		return b.rank
	}
	i := 0
	for i < len(backendOrder) && key(backendOrder[i]) <= key(b) {
		i++
	}
	backendOrder = slices.Insert(backendOrder, i, b)
}

// Backends returns the names of the backends this build has, best first.
// Not all of them may be able to run on this system: Open says.
func Backends() []string {
	names := make([]string, len(backendOrder))
	for i, b := range backendOrder {
		names[i] = b.name
	}
	return names
}

// openBackend opens the backend cfg names, or the best available one for
// "auto", logging the choice and the reasons for passing over better ones.
// "auto" passes over an engine the system refuses (ErrUnavailable), not
// one that fails for another reason, such as a bad setting: that error is
// returned.
func openBackend(p *Port) (backend, string, error) {
	want := p.cfg.Backend
	if want != "auto" {
		for _, b := range backendOrder {
			if b.name == want {
				be, err := b.open(p)
				return be, b.name, err
			}
		}
		return nil, "", fmt.Errorf("cport: unknown backend %q (this build has %v): %w", want, Backends(), ErrUnavailable)
	}
	var skipped []error
	for _, b := range backendOrder {
		if b.rank < 0 {
			continue
		}
		be, err := b.open(p)
		if err == nil {
			if len(skipped) > 0 {
				p.log.Info("cport: backend chosen", "backend", b.name, "passed_over", errors.Join(skipped...).Error())
			} else {
				p.log.Debug("cport: backend chosen", "backend", b.name)
			}
			return be, b.name, nil
		}
		if !errors.Is(err, ErrUnavailable) {
			return nil, "", err // a configuration error, not the system's limits
		}
		skipped = append(skipped, err)
	}
	return nil, "", errors.Join(skipped...)
}
