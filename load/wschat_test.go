package load

import (
	"context"
	"os"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// WebSocket clients of the chat server's gateway find every message, once,
// in each sender's order, whatever the server's TCP framing.
func TestWSRunChat(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", Backend: "portable", Framing: f})
			rep, err := Run(context.Background(), Config{
				Addrs:      []string{srv.WSAddr().String()},
				WebSocket:  true,
				Clients:    50,
				Senders:    4,
				Duration:   time.Second,
				Warmup:     100 * time.Millisecond,
				ServerPIDs: []int{os.Getpid()},
			})
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, rep)
			checkDriver(t, rep)
			if rep.Latency.Count == 0 {
				t.Errorf("latency %+v", rep.Latency)
			}
		})
	}
}

// Idle WebSocket clients are registered and held.
func TestWSIdleChat(t *testing.T) {
	srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", Backend: "portable"})
	rep, err := Idle(context.Background(), Config{
		Addrs:     []string{srv.WSAddr().String()},
		WebSocket: true,
		Clients:   100,
		Duration:  100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() {
		t.Errorf("%d disconnected: %s", rep.Disconnected, rep.Disconnect)
	}
}
