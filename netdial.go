package cport

import (
	"context"
	"net"
	"sync"
)

// DialNet connects to address on the port's engine and returns the
// connection adapted to net.Conn (Conn.NetConn), blocking until it is
// connected or has failed: net.Dialer's DialContext over Port.Dial, whose
// networks and addresses it takes. The dial's completion goes to DialNet,
// not to the port's queue; the connection's completion key is 0.
//
// When ctx is done first, DialNet returns an *OpError wrapping ctx's
// error (context.DeadlineExceeded is a timeout: its Timeout is true) and
// cancels the dial in the engine (as DialTimeout does); a connection made
// all the same is closed at once. Once the port is closed, DialNet
// returns an error that matches net.ErrClosed.
func (p *Port) DialNet(ctx context.Context, network, address string) (*NetConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, &OpError{Op: "dial", Backend: p.backend, Err: err}
	}
	r := &dialRoute{done: make(chan struct{})}
	d, err := p.dial(network, address, 0, 0, 0, r)
	if err != nil {
		if isClosed(err) {
			err = &OpError{Op: "dial", Backend: p.backend, Err: net.ErrClosed}
		}
		return nil, err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		r.mu.Lock()
		select {
		case <-r.done: // completed meanwhile: take it
		default:
			r.abandoned = true
		}
		abandoned := r.abandoned
		r.mu.Unlock()
		if abandoned {
			d.cancel(false)
			return nil, &OpError{Op: "dial", Backend: p.backend, Err: ctx.Err()}
		}
	}
	comp := r.comp
	switch {
	case comp.Err == nil:
		return comp.Conn.ext.nc, nil
	case isClosed(comp.Err):
		return nil, &OpError{Op: "dial", Backend: p.backend, Err: net.ErrClosed}
	}
	return nil, comp.Err
}

// dialRoute takes the completion of one of DialNet's dials, in place of
// the port's queue.
type dialRoute struct {
	done chan struct{} // closed once comp is set

	mu        sync.Mutex // guards the fields below
	comp      Completion
	abandoned bool // DialNet returned without it: a connection made is closed
}

// complete takes the dial's completion, on the goroutine that produced
// it.
func (r *dialRoute) complete(c Completion) {
	r.mu.Lock()
	if r.abandoned {
		r.mu.Unlock()
		if c.Conn != nil {
			c.Conn.Close()
		}
		return
	}
	r.comp = c
	close(r.done)
	r.mu.Unlock()
}
