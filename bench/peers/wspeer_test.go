package peers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"cport.dev/cport/load"
)

// A wsClient is a WebSocket client of wspeer whose messages a goroutine
// reads into in (closed when reading fails): a read of the library that
// times out closes the connection, so the tests wait on in instead.
type wsClient struct {
	conn *websocket.Conn
	in   chan wsMsg
	err  error // why reading stopped, once in is closed
}

type wsMsg struct {
	typ  websocket.MessageType
	data string
}

// dialWS connects a WebSocket client to wspeer at addr.
func dialWS(t *testing.T, addr string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &wsClient{conn: conn, in: make(chan wsMsg, 1<<14)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(c.in)
		for {
			typ, b, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			c.in <- wsMsg{typ, string(b)}
		}
	}()
	t.Cleanup(func() { conn.CloseNow(); <-done })
	return c
}

// recv returns the next message, or false if the connection ended or
// nothing came within d.
func (c *wsClient) recv(d time.Duration) (wsMsg, bool) {
	select {
	case m, ok := <-c.in:
		return m, ok
	case <-time.After(d):
		return wsMsg{}, false
	}
}

// registerWS makes sure wspeer registered every client: the first sends
// probes until each has received one.
func registerWS(t *testing.T, clients []*wsClient) {
	t.Helper()
	got := make([]bool, len(clients))
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; n++ {
		if err := clients[0].conn.Write(context.Background(), websocket.MessageText, fmt.Appendf(nil, "probe %d", n)); err != nil {
			t.Fatal(err)
		}
		all := true
		for i, c := range clients {
			for !got[i] {
				m, ok := c.recv(100 * time.Millisecond)
				if !ok {
					break
				}
				got[i] = strings.HasPrefix(m.data, "probe")
			}
			all = all && got[i]
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients not registered after 10s: %v", got)
		}
	}
}

// TestWSPeerRelay checks that every message reaches every WebSocket
// client, the sender included, once, in each sender's order, as text when
// it is UTF-8 and as binary when not.
func TestWSPeerRelay(t *testing.T) {
	// The senders do not wait for their echoes: room for all their
	// messages in each client's channel (16,384 of them), so that none is
	// dropped as a slow consumer.
	addr := start(t, "wspeer", "--send-queue", fmt.Sprint(64<<20))
	clients := make([]*wsClient, 6)
	for i := range clients {
		clients[i] = dialWS(t, addr)
	}
	registerWS(t, clients)
	const perSender = 300
	var wg sync.WaitGroup
	for s, c := range clients {
		wg.Go(func() {
			for i := range perSender {
				typ, msg := websocket.MessageBinary, fmt.Appendf(nil, "m %d %d", s, i)
				if i%10 == 9 {
					msg = append(msg, 0xff) // not UTF-8
				}
				if err := c.conn.Write(context.Background(), typ, msg); err != nil {
					t.Errorf("sender %d: %v", s, err) // not Fatal: another goroutine
					return
				}
			}
		})
	}
	for r, c := range clients {
		next := make([]int, len(clients))
		for n := 0; n < perSender*len(clients); {
			m, ok := c.recv(20 * time.Second)
			if !ok {
				t.Fatalf("client %d: no message %d: %v", r, n, c.err)
			}
			typ, b := m.typ, m.data
			if strings.HasPrefix(b, "probe") {
				continue
			}
			var s, seq int
			if _, err := fmt.Sscanf(b, "m %d %d", &s, &seq); err != nil || s >= len(clients) {
				t.Fatalf("client %d: unexpected message %q", r, b)
			}
			if seq != next[s] {
				t.Fatalf("client %d: from sender %d got %d, want %d", r, s, seq, next[s])
			}
			if want := map[bool]websocket.MessageType{true: websocket.MessageBinary, false: websocket.MessageText}[seq%10 == 9]; typ != want {
				t.Fatalf("client %d: message %q came as %v, want %v", r, b, typ, want)
			}
			next[s]++
			n++
		}
	}
	wg.Wait()
}

// TestWSPeerLimit checks that a message above --max-message closes that
// client only, and that other paths than /ws are not found.
func TestWSPeerLimit(t *testing.T) {
	addr := start(t, "wspeer", "--max-message", "100")
	bad, good := dialWS(t, addr), dialWS(t, addr)
	registerWS(t, []*wsClient{good, bad})
	ctx := context.Background()
	if err := bad.conn.Write(ctx, websocket.MessageText, []byte(strings.Repeat("y", 101))); err != nil {
		t.Fatal(err)
	}
	for {
		m, ok := <-bad.in // closed once the server closes the connection
		if !ok {
			break
		}
		if strings.HasPrefix(m.data, "y") {
			t.Fatal("the message over the limit was relayed")
		}
	}
	if err := good.conn.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 100))); err != nil {
		t.Fatal(err)
	}
	for {
		m, ok := good.recv(10 * time.Second)
		if !ok {
			t.Fatal("the other client got nothing more")
		}
		if strings.HasPrefix(m.data, "x") {
			break
		}
	}
	resp, err := http.Get("http://" + addr + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other: %s, want 404", resp.Status)
	}
}

// TestWSPeerLoad checks wspeer with cport load's WebSocket clients: every
// message to every client, once, in order.
func TestWSPeerLoad(t *testing.T) {
	addr := start(t, "wspeer")
	rep, err := load.Run(context.Background(), load.Config{
		Addrs: []string{addr}, WebSocket: true, Clients: 20, Senders: 3, Duration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || rep.Sent == 0 || rep.Delivered != rep.Sent*20 {
		t.Errorf("errors %+v (%s); sent %d, delivered %d, want 20 times that", rep.Errors, rep.Disconnect, rep.Sent, rep.Delivered)
	}
}
