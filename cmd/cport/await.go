package main

import (
	"context"
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
func patient(dial dialFunc, w io.Writer) dialFunc {
	var once sync.Once
	return func(ctx context.Context, addr string) (net.Conn, error) {
		start := time.Now()
		for {
			c, err := dial(ctx, addr)
			if err == nil || !load.Refused(err) {
				return c, err
			}
			if time.Since(start) >= load.RefusedWait {
				return nil, fmt.Errorf("%w: is the server running? (tried for %v)", err, load.RefusedWait)
			}
			if w != nil {
				once.Do(func() { fmt.Fprintf(w, "waiting for the server at %s to listen (up to %v)\n", addr, load.RefusedWait) })
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: is the server running? (tried for %v)", err, time.Since(start).Round(100*time.Millisecond))
			}
		}
	}
}
