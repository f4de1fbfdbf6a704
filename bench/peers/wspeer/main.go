// Command wspeer is the chat relay of PROTOCOL.md for WebSocket clients
// (RFC 6455, as cport serve's gateway, --ws-addr: GET /ws, no subprotocol,
// no extension), on github.com/coder/websocket, written the usual way: a
// goroutine per connection reads its messages, and each message goes, as
// one shared byte slice, into the bounded channel of every client, whose
// writer goroutine hands it to the library, which frames and writes it for
// that client. A client whose channel is full is disconnected as a slow
// consumer. Each WebSocket message a client sends is one chat message;
// every client, the sender included, receives it as one message, text
// when it is valid UTF-8, else binary.
//
// Usage:
//
//	wspeer [--addr A] [--max-message N] [--send-queue N] [--workers N]
//
// --framing is accepted and ignored (WebSocket messages carry their own
// boundaries); --send-queue, in bytes as for the other peers, bounds each
// client's channel to --send-queue / 4 KiB messages (1,024 by default).
package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"cport.dev/cport/bench/internal/peer"
)

const name = "wspeer"

func main() {
	o := peer.Parse(name, false)
	if o.Echo {
		peer.Fatal(name, errors.New("--mode echo: not a mode of this peer (relay only)"))
	}
	if o.Workers > 0 {
		runtime.GOMAXPROCS(o.Workers)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		peer.Fatal(name, err)
	}
	peer.Listening(name, ln.Addr().String())
	s := &server{opts: o, queue: max(1, o.SendQueue/(4<<10))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	peer.Fatal(name, hs.Serve(ln))
}

// A server is the registry of clients.
type server struct {
	opts  peer.Options
	queue int // messages each client's channel holds

	mu      sync.RWMutex
	clients map[*client]struct{}
}

// A message is one chat message, shared by every client's channel.
type message struct {
	typ  websocket.MessageType
	data []byte
}

// A client is one WebSocket connection.
type client struct {
	conn *websocket.Conn
	out  chan message // bounded: full means a slow consumer
	once sync.Once
	done chan struct{} // closed when the client is dropped
}

// serveWS upgrades the request, registers the client, runs its writer
// and reads its messages until the connection ends.
func (s *server) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept answered the request
	}
	conn.SetReadLimit(int64(s.opts.MaxMessage))
	c := &client{conn: conn, out: make(chan message, s.queue), done: make(chan struct{})}
	s.add(c)
	defer s.remove(c)
	go c.write()
	c.read(s)
	c.drop()
}

// read relays every message the client sends until its connection ends
// (a message above --max-message ends it too: the library closes with
// status 1009).
func (c *client) read(s *server) {
	ctx := context.Background()
	var buf bytes.Buffer
	for {
		_, r, err := c.conn.Reader(ctx)
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		s.relay(buf.Bytes())
		if buf.Cap() > 64<<10 { // a large message: do not keep its memory
			buf = bytes.Buffer{}
		}
	}
}

// relay queues a copy of b, one message, on every client, dropping those
// whose channel is full.
func (s *server) relay(b []byte) {
	m := message{typ: websocket.MessageBinary, data: append([]byte(nil), b...)}
	if utf8.Valid(m.data) {
		m.typ = websocket.MessageText
	}
	s.mu.RLock()
	for c := range s.clients {
		select {
		case c.out <- m:
		default:
			c.drop() // a slow consumer; its reader unregisters it
		}
	}
	s.mu.RUnlock()
}

// write hands each queued message to the library, which frames it and
// writes it, until the client is dropped or a write fails.
func (c *client) write() {
	ctx := context.Background()
	for {
		select {
		case m := <-c.out:
			if err := c.conn.Write(ctx, m.typ, m.data); err != nil {
				c.drop()
				return
			}
		case <-c.done:
			return
		}
	}
}

// drop closes the connection, which ends its reader and its writer; it is
// idempotent and takes no server lock (relay calls it).
func (c *client) drop() {
	c.once.Do(func() {
		close(c.done)
		c.conn.CloseNow()
	})
}

func (s *server) add(c *client) {
	s.mu.Lock()
	if s.clients == nil {
		s.clients = make(map[*client]struct{})
	}
	s.clients[c] = struct{}{}
	s.mu.Unlock()
}

func (s *server) remove(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}
