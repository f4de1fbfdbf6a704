package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// awaitTimeout is how long a load command waits for a server that refuses
// connections: one started a moment before (`cport serve & cport load`)
// may not listen yet.
const awaitTimeout = 10 * time.Second

// wsaeConnRefused is Windows' number for a refused connection, which its
// syscall.ECONNREFUSED does not match.
const wsaeConnRefused = syscall.Errno(10061)

// awaitServers waits until every address of addrs takes a connection
// (made with dial, then closed), as long as they refuse, up to
// awaitTimeout; after a second it says on w (nil: nowhere) what it waits
// for. Any other error is returned at once.
func awaitServers(ctx context.Context, dial dialFunc, addrs []string, w io.Writer) error {
	deadline := time.Now().Add(awaitTimeout)
	said := false
	for _, addr := range addrs {
		for {
			c, err := dial(ctx, addr)
			if err == nil {
				c.Close()
				break
			}
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, wsaeConnRefused) {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: is the server running? (waited %v)", err, awaitTimeout)
			}
			if !said && w != nil && time.Until(deadline) < awaitTimeout-time.Second {
				fmt.Fprintf(w, "waiting for the server at %s to listen (up to %v)\n", addr, awaitTimeout)
				said = true
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}
