package cport_test

import (
	"fmt"
	"testing"

	"cport.dev/cport"
)

// TestPortStats: Port.Stats names the engine, and a send that reaches the
// client counts a write on every engine that counts writes (all of them).
func TestPortStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		p := openPort(t, b)
		s := collect(t, p, 1)
		conn, cl := acceptOne(t, p, s)
		before := p.Stats()
		if before.Backend != b {
			t.Errorf("Stats().Backend = %q; want %q", before.Backend, b)
		}
		if err := conn.Send(cport.MsgOf([]byte("hello")), 7); err != nil {
			t.Fatal(err)
		}
		mustReadN(t, cl, 5)
		// An engine counts a write once its system call returns, which
		// may be after the peer has read what it wrote.
		eventually(t, fmt.Sprintf("Stats().Writes above %d, the count before a send that was read", before.Writes), func() bool {
			return p.Stats().Writes > before.Writes
		})
		p.Close()
		p.Stats() // after Close too
	})
}
