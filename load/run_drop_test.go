package load

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// byteCount counts the bytes written to it.
type byteCount struct{ n atomic.Int64 }

func (c *byteCount) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return len(b), nil
}

// cutRelay relays TCP connections to upstream; every other connection it
// cuts, both ways, once it has passed limit bytes from upstream: what a
// server that drops a client mid-message does. It spares the senders
// (connections that sent more than a probe by then): a sender cut would
// leave its later messages undelivered, and the drain waiting for them. It
// returns its address and the count of connections cut.
func cutRelay(t *testing.T, upstream string, limit int64) (string, *atomic.Int64) {
	t.Helper()
	cut := new(atomic.Int64)
	addr := proxyTCP(t, upstream, func(i int) (toUp, toDown func(down, up net.Conn)) {
		sent := new(byteCount)
		toUp = func(down, up net.Conn) {
			io.Copy(io.MultiWriter(up, sent), down)
		}
		toDown = func(down, up net.Conn) {
			if i%2 == 1 {
				if _, err := io.CopyN(down, up, limit); err == nil && sent.n.Load() < 1024 {
					cut.Add(1)
					up.Close()
					return
				}
			}
			io.Copy(down, up)
		}
		return toUp, toDown
	})
	return addr, cut
}

// Connections that the server closes mid-run are seen, and counted as
// disconnected, by the drain's end: an end of stream queued behind the
// last data read is not missed (run.stopSkipping).
func TestRunServerCloses(t *testing.T) {
	srv := startServer(t, chat.Frame)
	const clients = 20
	addr, cut := cutRelay(t, srv.Addr().String(), 500*68+17)
	cfg := Config{
		Addrs:        []string{addr},
		Clients:      clients,
		Senders:      2,
		Duration:     time.Second,
		DrainTimeout: 5 * time.Second,
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DrainTimedOut {
		t.Errorf("the drain timed out after %v", rep.Drain)
	}
	if n := cut.Load(); n == 0 || rep.Errors.Disconnected != n || rep.Errors.Lost == 0 {
		t.Errorf("errors %+v (%s), want %d disconnected (those cut), some lost", rep.Errors, rep.Disconnect, n)
	}
}
