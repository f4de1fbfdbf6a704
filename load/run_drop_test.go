package load

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// cutRelay relays TCP connections to upstream; every other connection it
// cuts, both ways, once it has passed limit bytes from upstream: what a
// server that drops a client mid-message does. It returns its address.
func cutRelay(t *testing.T, upstream string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, down); up.Close() }()
			go func() {
				defer wg.Done()
				if i%2 == 1 {
					io.CopyN(down, up, limit)
					up.Close()
				} else {
					io.Copy(down, up)
				}
				down.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Connections that the server closes mid-run are seen, and counted as
// disconnected, by the drain's end: an end of stream queued behind the
// last data read is not missed (run.stopSkipping).
func TestRunServerCloses(t *testing.T) {
	srv := startServer(t, chat.Frame)
	const clients = 20
	cfg := Config{
		Addrs:        []string{cutRelay(t, srv.Addr().String(), 500*68+17)},
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
	if rep.Errors.Disconnected != clients/2 || rep.Errors.Lost == 0 {
		t.Errorf("errors %+v (%s), want %d disconnected, some lost", rep.Errors, rep.Disconnect, clients/2)
	}
}
