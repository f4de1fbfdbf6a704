package chat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket gateway, tested with a second, independent implementation
// of the protocol (github.com/coder/websocket) and with hand-made frames.

// startWS starts a server with a WebSocket gateway on backend.
func startWS(t *testing.T, backend string, cfg Config) *testServer {
	t.Helper()
	cfg.Backend = backend
	cfg.WSAddr = "127.0.0.1:0"
	return startServer(t, cfg)
}

// wsURL returns the URL of ts's WebSocket endpoint.
func (ts *testServer) wsURL() string { return "ws://" + ts.WSAddr().String() + "/ws" }

// dialWS connects a coder/websocket client to ts; it is closed when the
// test ends.
func dialWS(t *testing.T, ts *testServer) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// readWS reads one message from c within longWait.
func readWS(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return typ, b
}

func writeWS(t *testing.T, c *websocket.Conn, typ websocket.MessageType, p []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	if err := c.Write(ctx, typ, p); err != nil {
		t.Fatal(err)
	}
}

// WebSocket and TCP clients in one room, for each framing: every message
// reaches every client, one frame each, text or binary as it is UTF-8 or
// not.
func TestWSRoom(t *testing.T) {
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			t.Run("line", func(t *testing.T) {
				ts := startWS(t, b, Config{Framing: Line})
				w1, w2 := dialWS(t, ts), dialWS(t, ts)
				tc := ts.dial("tcp", keepReads)
				ts.waitActive(3)
				writeWS(t, w1, websocket.MessageText, []byte("from w1"))
				for _, w := range []*websocket.Conn{w1, w2} {
					if typ, p := readWS(t, w); typ != websocket.MessageText || string(p) != "from w1" {
						t.Fatalf("got %v %q; want text %q", typ, p, "from w1")
					}
				}
				tc.expect([]byte("from w1\n"))
				tc.send([]byte("from tcp\n"))
				for _, w := range []*websocket.Conn{w1, w2} {
					if typ, p := readWS(t, w); typ != websocket.MessageText || string(p) != "from tcp" {
						t.Fatalf("got %v %q; want text %q", typ, p, "from tcp")
					}
				}
				tc.expect([]byte("from w1\nfrom tcp\n"))
			})
			t.Run("frame", func(t *testing.T) {
				ts := startWS(t, b, Config{Framing: Frame})
				w := dialWS(t, ts)
				tc := ts.dial("tcp", keepReads)
				ts.waitActive(2)
				bin := []byte{0xff, 0xfe, 0, 1}
				writeWS(t, w, websocket.MessageBinary, bin)
				writeWS(t, w, websocket.MessageBinary, nil) // an empty message is one too
				for _, want := range [][]byte{bin, {}} {
					if typ, p := readWS(t, w); typ != websocket.MessageBinary && len(want) > 0 || !bytes.Equal(p, want) {
						t.Fatalf("got %v %q; want %q", typ, p, want)
					}
				}
				tc.expect([]byte(frame(string(bin)) + frame("")))
				tc.send([]byte(frame("héllo")))
				if typ, p := readWS(t, w); typ != websocket.MessageText || string(p) != "héllo" {
					t.Fatalf("got %v %q; want text héllo", typ, p)
				}
			})
			t.Run("raw", func(t *testing.T) {
				ts := startWS(t, b, Config{Framing: Raw})
				w1, w2 := dialWS(t, ts), dialWS(t, ts)
				tc := ts.dial("tcp", keepReads)
				ts.waitActive(3)
				writeWS(t, w1, websocket.MessageText, []byte("one"))
				writeWS(t, w1, websocket.MessageText, []byte("two"))
				for _, want := range []string{"one", "two"} { // one frame each, even if read at once
					if _, p := readWS(t, w2); string(p) != want {
						t.Fatalf("got %q; want %q", p, want)
					}
				}
				tc.expect([]byte("onetwo"))
			})
		})
	}
}

// A large message, in a frame of 64-bit length, and a fragmented one.
func TestWSLargeAndFragmented(t *testing.T) {
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			ts := startWS(t, b, Config{Framing: Frame, MaxMessage: 1 << 20})
			w := dialWS(t, ts)
			ts.waitActive(1)
			big := bytes.Repeat([]byte("0123456789"), 70000)
			writeWS(t, w, websocket.MessageText, big)
			if _, p := readWS(t, w); !bytes.Equal(p, big) {
				t.Fatalf("got %d bytes; want %d", len(p), len(big))
			}
			ctx, cancel := context.WithTimeout(context.Background(), longWait)
			defer cancel()
			wr, err := w.Writer(ctx, websocket.MessageText)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{"frag", "ment", "ed"} {
				wr.Write([]byte(part))
				if f, ok := wr.(interface{ Flush() error }); ok {
					f.Flush()
				}
			}
			wr.Close()
			if _, p := readWS(t, w); string(p) != "fragmented" {
				t.Fatalf("got %q; want fragmented", p)
			}
		})
	}
}

// rawWS is a WebSocket client made by hand, to send what a library would
// not: it writes masked frames as given, and reads the server's frames.
type rawWS struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialRawWS upgrades a TCP connection to ts's gateway with header lines
// extra, and returns the client; the response must be status want (101
// for an upgrade) and the client is nil unless it was 101.
func dialRawWS(t *testing.T, ts *testServer, extra string, want int) *rawWS {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.WSAddr().String(), longWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(longWait))
	req := "GET /ws HTTP/1.1\r\nHost: " + ts.WSAddr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %q; want %d", resp.StatusCode, body, want)
	}
	if want != http.StatusSwitchingProtocols {
		return nil
	}
	// RFC 6455's own example of the key and its accept value.
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	c.SetDeadline(time.Time{})
	return &rawWS{conn: c, r: r}
}

// clientFrame returns a masked client frame.
func clientFrame(b0 byte, p []byte) []byte {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := []byte{b0}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	case len(p) <= 0xFFFF:
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	default:
		f = append(f, 0x80|127, 0, 0, 0, 0, byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
	}
	f = append(f, key[:]...)
	for i, c := range p {
		f = append(f, c^key[i&3])
	}
	return f
}

// readFrame reads one server frame: its first byte and payload.
func (w *rawWS) readFrame(t *testing.T) (byte, []byte) {
	t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(longWait))
	var h [2]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[1]&0x80 != 0 {
		t.Fatal("server frame masked")
	}
	n := int(h[1])
	switch n {
	case 126:
		var x [2]byte
		io.ReadFull(w.r, x[:])
		n = int(x[0])<<8 | int(x[1])
	case 127:
		var x [8]byte
		io.ReadFull(w.r, x[:])
		n = 0
		for _, c := range x {
			n = n<<8 | int(c)
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.r, p); err != nil {
		t.Fatal(err)
	}
	return h[0], p
}

// waitEnd waits for the server to end the connection, and returns how.
func (w *rawWS) waitEnd(t *testing.T) error {
	t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(longWait))
	_, err := io.Copy(io.Discard, w.r)
	if err == nil {
		return io.EOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open")
	}
	return err
}

// Frames split at every byte, a ping between the fragments of a message:
// the pong comes at once, the message whole.
func TestWSSplitFrames(t *testing.T) {
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			ts := startWS(t, b, Config{Framing: Line})
			w := dialRawWS(t, ts, "", http.StatusSwitchingProtocols)
			ts.waitActive(1)
			var stream []byte
			stream = append(stream, clientFrame(0x01, []byte("hel"))...)     // text, not final
			stream = append(stream, clientFrame(0x89, []byte("are you"))...) // ping
			stream = append(stream, clientFrame(0x00, []byte("lo "))...)
			stream = append(stream, clientFrame(0x80, []byte("world"))...) // final
			for i := range stream {
				if _, err := w.conn.Write(stream[i : i+1]); err != nil {
					t.Fatal(err)
				}
			}
			if b0, p := w.readFrame(t); b0 != 0x8A || string(p) != "are you" {
				t.Fatalf("got %#x %q; want a pong", b0, p)
			}
			if b0, p := w.readFrame(t); b0 != 0x81 || string(p) != "hello world" {
				t.Fatalf("got %#x %q; want text hello world", b0, p)
			}
		})
	}
}

// A close frame is answered with one of the same code, and the connection
// closed: the client left, nothing held against it.
func TestWSClose(t *testing.T) {
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			ts := startWS(t, b, Config{Framing: Line})
			w := dialRawWS(t, ts, "", http.StatusSwitchingProtocols)
			ts.waitActive(1)
			w.conn.Write(clientFrame(0x88, []byte{0x03, 0xE8, 'b', 'y', 'e'}))
			if b0, p := w.readFrame(t); b0 != 0x88 || !bytes.Equal(p, []byte{0x03, 0xE8}) {
				t.Fatalf("got %#x %q; want close 1000", b0, p)
			}
			if err := w.waitEnd(t); err != io.EOF {
				t.Fatalf("ended with %v; want EOF", err)
			}
			st := ts.waitStats("the client left", func(st Stats) bool { return st.Left == 1 && st.Active == 0 })
			if st.BadInput != 0 || st.ConnErrors != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// Each breach of the protocol ends the offender's connection alone, counted
// as bad input.
func TestWSBadFrames(t *testing.T) {
	cases := []struct {
		name   string
		frames []byte
		big    bool // over the limit
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, false},
		{"reserved bit", clientFrame(0xC1, []byte("hi")), false},
		{"unknown opcode", clientFrame(0x83, []byte("hi")), false},
		{"long ping", clientFrame(0x89, bytes.Repeat([]byte("p"), 126)), false},
		{"fragmented ping", clientFrame(0x09, []byte("p")), false},
		{"lone continuation", clientFrame(0x80, []byte("hi")), false},
		{"message inside a message", append(clientFrame(0x01, []byte("a")), clientFrame(0x81, []byte("b"))...), false},
		{"invalid UTF-8 text", clientFrame(0x81, []byte{0xff, 0xfe}), false},
		{"invalid UTF-8 across fragments", append(clientFrame(0x01, []byte{0xe2, 0x82}), clientFrame(0x80, []byte{0x28})...), false},
		{"close of 1 byte", clientFrame(0x88, []byte{3}), false},
		{"close code 1005", clientFrame(0x88, []byte{0x03, 0xED}), false},
		{"close code 2999", clientFrame(0x88, []byte{0x0B, 0xB7}), false},
		{"close reason not UTF-8", clientFrame(0x88, []byte{0x03, 0xE8, 0xff}), false},
		{"over the limit", clientFrame(0x82, make([]byte, 1025)), true},
		{"over the limit in fragments", append(clientFrame(0x02, make([]byte, 1000)), clientFrame(0x80, make([]byte, 25))...), true},
		{"length with its top bit", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, false},
	}
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			ts := startWS(t, b, Config{Framing: Frame, MaxMessage: 1024})
			good := dialWS(t, ts)
			for i, tc := range cases {
				w := dialRawWS(t, ts, "", http.StatusSwitchingProtocols)
				ts.waitActive(2)
				w.conn.Write(tc.frames)
				if err := w.waitEnd(t); err == io.EOF {
					t.Errorf("%s: closed gracefully; want a reset", tc.name)
				}
				st := ts.waitStats(tc.name, func(st Stats) bool { return st.BadInput == int64(i+1) && st.Active == 1 })
				if tc.big && st.Oversize == 0 {
					t.Errorf("%s: not counted as oversize: %+v", tc.name, st)
				}
			}
			writeWS(t, good, websocket.MessageText, []byte("still here"))
			if _, p := readWS(t, good); string(p) != "still here" {
				t.Fatalf("got %q", p)
			}
		})
	}
}

// The HTTP side: the page, and every request the gateway turns down.
func TestWSHTTP(t *testing.T) {
	ts := startWS(t, "", Config{Framing: Line, WSOrigins: nil})
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get("http://" + ts.WSAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	if code, ct, body := get("/"); code != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "<html") && !strings.Contains(body, "<!doctype") {
		t.Errorf("GET /: %d %s %.40q", code, ct, body)
	}
	if code, _, _ := get("/nope"); code != 404 {
		t.Errorf("GET /nope: %d; want 404", code)
	}
	if code, _, _ := get("/ws"); code != http.StatusUpgradeRequired {
		t.Errorf("GET /ws without an upgrade: %d; want 426", code)
	}
	dialRawWS(t, ts, "Origin: http://evil.example\r\n", http.StatusForbidden)
	dialRawWS(t, ts, "Origin: http://"+ts.WSAddr().String()+"\r\n", http.StatusSwitchingProtocols)
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", http.StatusMethodNotAllowed},
		{"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", http.StatusUpgradeRequired},
		{"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n", http.StatusBadRequest},
		{"GET /ws HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("y", 9000) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"NONSENSE\r\n\r\n", http.StatusBadRequest},
	} {
		c, err := net.Dial("tcp", ts.WSAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(longWait))
		io.WriteString(c, tc.req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("%.30q: %v", tc.req, err)
		} else if resp.StatusCode != tc.want {
			t.Errorf("%.30q: %d; want %d", tc.req, resp.StatusCode, tc.want)
		}
		c.Close()
	}
	if st := ts.Stats(); st.Active != 1 || st.BadInput != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A request that never ends is cut at WSHandshakeTimeout; the gateway
// serves on.
func TestWSHandshakeTimeout(t *testing.T) {
	ts := startWS(t, "", Config{Framing: Line, WSHandshakeTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", ts.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\n")
	c.SetReadDeadline(time.Now().Add(longWait))
	if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
		t.Fatalf("read: %v; want a reset or EOF", err)
	}
	ts.waitStats("a handshake failure", func(st Stats) bool { return st.WSFailed == 1 })
	ts.waitLog("WebSocket request failed")
	dialWS(t, ts)
}

// A WebSocket client that reads nothing is a slow consumer like any: the
// sender waits for it (SenderLimit) until it is found stalled
// (WriteTimeout); it goes, the others stay and get everything.
func TestWSSlowConsumer(t *testing.T) {
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			ts := startWS(t, b, Config{Framing: Frame, MaxMessage: 1024, SendQueue: 64 << 10, WriteTimeout: 300 * time.Millisecond})
			stalled := dialRawWS(t, ts, "", http.StatusSwitchingProtocols)
			stalled.conn.(*net.TCPConn).SetReadBuffer(4096)
			good := dialWS(t, ts)
			tc := ts.dial("tcp", discardReads)
			ts.waitActive(3)
			msg := bytes.Repeat([]byte("m"), 1000)
			const n = 10000 // 10 MB: more than the stalled client's queue and socket buffers hold
			go func() {
				for range n {
					tc.write([]byte(frame(string(msg))))
				}
			}()
			for i := range n {
				if _, p := readWS(t, good); !bytes.Equal(p, msg) {
					t.Fatalf("message %d: %d bytes; want %d", i, len(p), len(msg))
				}
			}
			st := ts.waitStats("the stalled client gone", func(st Stats) bool { return st.WriteTimeouts == 1 && st.Active == 2 })
			if st.BadInput != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A message begun and not finished within MessageTimeout ends its client,
// whatever pings it sends meanwhile.
func TestWSMessageTimeout(t *testing.T) {
	ts := startWS(t, "", Config{Framing: Line, MessageTimeout: 300 * time.Millisecond})
	w := dialRawWS(t, ts, "", http.StatusSwitchingProtocols)
	ts.waitActive(1)
	w.conn.Write(clientFrame(0x01, []byte("begun"))) // not final
	stop := make(chan struct{})
	defer close(stop)
	go func() { // pings, each answered, none a message's end
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := w.conn.Write(clientFrame(0x89, nil)); err != nil {
					return
				}
			}
		}
	}()
	ts.waitStats("a message timeout", func(st Stats) bool { return st.MessageTimeouts == 1 && st.Active == 0 })
}

// Shutdown says goodbye to WebSocket clients with a close frame, 1001,
// after what was relayed before.
func TestWSShutdown(t *testing.T) {
	ts := startWS(t, "", Config{Framing: Line})
	w := dialRawWS(t, ts, "", http.StatusSwitchingProtocols)
	ts.waitActive(1)
	w.conn.Write(clientFrame(0x81, []byte("last words")))
	if b0, p := w.readFrame(t); b0 != 0x81 || string(p) != "last words" {
		t.Fatalf("got %#x %q", b0, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if b0, p := w.readFrame(t); b0 != 0x88 || len(p) < 2 || int(p[0])<<8|int(p[1]) != closeGoingAway {
		t.Fatalf("got %#x %q; want close 1001", b0, p)
	}
}

// In a cluster, WebSocket clients of one server and TCP clients of another
// are one room.
func TestClusterWS(t *testing.T) {
	nodes := startNATS(t, 1)
	cfg := Config{Framing: Line, NATS: nodes[0].ClientURL(), Cluster: "ws", WSAddr: "127.0.0.1:0"}
	a, b := startServer(t, cfg), startServer(t, cfg)
	a.waitLog("bus: relaying")
	b.waitLog("bus: relaying")
	wa := dialWS(t, a)
	tb := b.dial("tcp", keepReads)
	wb := dialWS(t, b)
	a.waitActive(1)
	b.waitActive(2)
	writeWS(t, wa, websocket.MessageText, []byte("from a's browser"))
	tb.expect([]byte("from a's browser\n")) // then the next: senders apart have no order
	tb.send([]byte("from b's terminal\n"))
	tb.expect([]byte("from a's browser\nfrom b's terminal\n"))
	for _, w := range []*websocket.Conn{wa, wb} {
		for _, want := range []string{"from a's browser", "from b's terminal"} {
			if _, p := readWS(t, w); string(p) != want {
				t.Fatalf("got %q; want %q", p, want)
			}
		}
	}
}

// A connection that closes without a word (a port probe) is no failure;
// one that closes in the middle of its request is.
func TestWSProbe(t *testing.T) {
	ts := startWS(t, "", Config{Framing: Line})
	c, err := net.Dial("tcp", ts.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = net.Dial("tcp", ts.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /ws HTTP/1.1\r\n")
	c.Close()
	ts.waitStats("one failure", func(st Stats) bool { return st.WSFailed == 1 })
	dialWS(t, ts) // served after both
	if st := ts.Stats(); st.WSFailed != 1 {
		t.Errorf("%d failures; want 1, the half request", st.WSFailed)
	}
}

// wss: the gateway with Config.TLS speaks WebSocket over TLS; its clients
// and the TLS TCP clients are one room, the page is served, and a close is
// answered and ends the client as in the clear.
func TestWSS(t *testing.T) {
	for _, b := range testBackends(t) {
		t.Run(b, func(t *testing.T) {
			srvTLS, cliTLS := testTLS(t)
			ts := startWS(t, b, Config{Framing: Line, TLS: srvTLS})
			ctx, cancel := context.WithTimeout(context.Background(), longWait)
			defer cancel()
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS}}
			url := "wss://" + ts.WSAddr().String() + "/ws"
			w, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			defer w.CloseNow()
			tc := ts.dialTLS("tls", keepReads)
			ts.waitActive(2)
			writeWS(t, w, websocket.MessageText, []byte("over wss"))
			if _, p := readWS(t, w); string(p) != "over wss" {
				t.Fatalf("got %q", p)
			}
			tc.expect([]byte("over wss\n"))
			tc.send([]byte("over tls\n"))
			if _, p := readWS(t, w); string(p) != "over tls" {
				t.Fatalf("got %q", p)
			}
			resp, err := hc.Get("https://" + ts.WSAddr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Contains(page, []byte("<title>")) {
				t.Errorf("GET / over TLS: %d, %d bytes", resp.StatusCode, len(page))
			}
			if err := w.Close(websocket.StatusNormalClosure, "bye"); err != nil {
				t.Fatalf("close: %v", err)
			}
			st := ts.waitStats("the wss client gone", func(st Stats) bool { return st.Active == 1 && st.Left == 1 })
			if st.BadInput != 0 || st.ConnErrors != 0 || st.WSPages != 1 || st.WSUpgrades != 1 {
				t.Errorf("stats %+v", st)
			}
			// At Shutdown, a wss client gets its close frame too.
			w2, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			defer w2.CloseNow()
			ts.waitActive(2)
			if err := ts.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := w2.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Fatalf("read after Shutdown: %v; want close 1001", err)
			}
		})
	}
}
