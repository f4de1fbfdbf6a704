package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"cport.dev/cport/load"
)

// patient returns dial trying again, for up to load.RefusedWait, a server
// that refuses connections (one started a moment before, as in `cport
// serve & cport load`), saying once on w (nil: nowhere) that it waits.
// load's own dials do the same: no connection is made only to find out.
//
// No server at the address shows as a refusal, or as a connect that
// times out: ctx's deadline may end a try midway (on Windows a refused
// connect takes a second or more, for the SYN is sent again), and a host
// that drops the SYN never answers. Either way the error asks whether the
// server runs, naming the refusal if one came.
func patient(dial dialFunc, w io.Writer) dialFunc {
	var once sync.Once
	return func(ctx context.Context, addr string) (net.Conn, error) {
		start := time.Now()
		var refused error // the last refusal
		for {
			c, err := dial(ctx, addr)
			switch {
			case err == nil:
				return c, nil
			case load.Refused(err):
				refused = err
			case connectTimedOut(err):
				if refused != nil {
					err = refused
				}
				return nil, notRunning(err, time.Since(start))
			default:
				return nil, err
			}
			if time.Since(start) >= load.RefusedWait {
				return nil, notRunning(err, load.RefusedWait)
			}
			if w != nil {
				once.Do(func() { fmt.Fprintf(w, "waiting for the server at %s to listen (up to %v)\n", addr, load.RefusedWait) })
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return nil, notRunning(err, time.Since(start))
			}
		}
	}
}

// connectTimedOut reports whether err is a connect that timed out (a
// dial's, not a TLS handshake's after it: that server runs).
func connectTimedOut(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && op.Timeout()
}

// notRunning is the error of a dial that found no server in d.
func notRunning(err error, d time.Duration) error {
	return fmt.Errorf("%w: is the server running? (tried for %v)", err, d.Round(100*time.Millisecond))
}
