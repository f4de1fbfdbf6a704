package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// readClientFrame reads one frame that a client sent (masked) and returns
// its header and unmasked payload.
func readClientFrame(br *bufio.Reader) (wsHeader, []byte, error) {
	var hdr [wsMaxHeader]byte
	if _, err := io.ReadFull(br, hdr[:2]); err != nil {
		return wsHeader{}, nil, err
	}
	n := 2
	for {
		h, ok, err := parseWSHeader(hdr[:n])
		if err != nil {
			return h, nil, err
		}
		if ok {
			if !h.masked {
				return h, nil, errors.New("unmasked frame from a client")
			}
			payload := make([]byte, h.n)
			if _, err := io.ReadFull(br, payload); err != nil {
				return h, nil, err
			}
			maskWS(payload, h.key)
			return h, payload, nil
		}
		if _, err := io.ReadFull(br, hdr[n:n+1]); err != nil {
			return h, nil, err
		}
		n++
	}
}

// serveUpgrade reads a client's upgrade request from br and answers it on
// w; it returns the request's key.
func serveUpgrade(br *bufio.Reader, w io.Writer) (string, error) {
	key := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Sec-WebSocket-Key: "); ok {
			key = v
		}
	}
	_, err := fmt.Fprintf(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	return key, err
}

// A wsBridge is a WebSocket gateway in front of a chat server of frame
// framing, for the tests: each WebSocket client gets a TCP connection to
// the server; each of its messages goes up as a frame, each frame comes
// down as a WebSocket message. With fragment, every message comes down in
// three fragments with a ping among them.
type wsBridge struct {
	addr     string
	pings    atomic.Int64
	pongs    atomic.Int64 // answers with the right payload
	badPongs atomic.Int64
}

func startWSBridge(t testing.TB, upstream string, fragment bool) *wsBridge {
	t.Helper()
	b := &wsBridge{}
	b.addr = proxyTCP(t, upstream, func(int) (toUp, toDown func(down, up net.Conn)) {
		ready := make(chan bool, 1)
		toUp = func(down, up net.Conn) {
			br := bufio.NewReader(down)
			if _, err := serveUpgrade(br, down); err != nil {
				ready <- false
				return
			}
			ready <- true
			bw := bufio.NewWriter(up)
			for {
				h, payload, err := readClientFrame(br)
				if err != nil {
					return
				}
				switch h.op {
				case wsText, wsBinary:
					bw.Write(binary.BigEndian.AppendUint32(nil, uint32(len(payload))))
					bw.Write(payload)
				case wsPong:
					if bytes.HasPrefix(payload, []byte("ping ")) {
						b.pongs.Add(1)
					} else {
						b.badPongs.Add(1)
					}
				case wsClose:
					return
				}
				if br.Buffered() == 0 && bw.Flush() != nil {
					return
				}
			}
		}
		toDown = func(down, up net.Conn) {
			if !<-ready {
				return
			}
			br := bufio.NewReader(up)
			bw := bufio.NewWriter(down)
			for n := 0; ; n++ {
				var hdr [4]byte
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				if _, err := io.ReadFull(br, msg); err != nil {
					return
				}
				if !fragment {
					bw.Write(serverFrame(true, wsText, msg))
				} else {
					third := len(msg) / 3
					bw.Write(serverFrame(false, wsText, msg[:third]))
					bw.Write(serverFrame(true, wsPing, fmt.Appendf(nil, "ping %d", n)))
					b.pings.Add(1)
					bw.Write(serverFrame(false, wsCont, msg[third:2*third]))
					bw.Write(serverFrame(true, wsCont, msg[2*third:]))
				}
				if br.Buffered() == 0 && bw.Flush() != nil {
					return
				}
			}
		}
		return toUp, toDown
	})
	return b
}

// WebSocket clients through a gateway find every message, once, in order,
// whole messages or fragmented ones with pings among the fragments, which
// they answer.
func TestWSRunBridge(t *testing.T) {
	for _, fragment := range []bool{false, true} {
		t.Run(fmt.Sprintf("fragment=%v", fragment), func(t *testing.T) {
			srv := startServer(t, chat.Frame)
			b := startWSBridge(t, srv.Addr().String(), fragment)
			rep, err := Run(context.Background(), Config{
				Addrs:     []string{b.addr},
				WebSocket: true,
				Clients:   20,
				Senders:   3,
				Duration:  500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, rep)
			if rep.Framing != "websocket" {
				t.Errorf("report's framing %q, want websocket", rep.Framing)
			}
			if fragment && (b.pings.Load() == 0 || b.badPongs.Load() != 0) {
				t.Errorf("%d pings sent, %d pongs with their payload, %d without", b.pings.Load(), b.pongs.Load(), b.badPongs.Load())
			}
		})
	}
}

// fakeWS serves answer to every WebSocket handshake made to the address it
// returns: answer gets the request's key and the connection, and writes
// what it likes (or nothing).
func fakeWS(t *testing.T, answer func(key string, conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				key := ""
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
					if v, ok := strings.CutPrefix(line, "Sec-WebSocket-Key: "); ok {
						key = strings.TrimSpace(v)
					}
				}
				answer(key, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// A server that does not upgrade the connection properly fails the run
// with a handshake error that says what it answered.
func TestWSHandshakeErrors(t *testing.T) {
	write := func(resp string) func(string, net.Conn) {
		return func(key string, conn net.Conn) {
			io.WriteString(conn, strings.ReplaceAll(resp, "ACCEPT", wsAccept(key)))
		}
	}
	const upgrade = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	cases := []struct {
		name   string
		answer func(string, net.Conn)
		want   string
	}{
		{"404", write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), `answered "HTTP/1.1 404 Not Found", not 101 Switching Protocols`},
		{"400", write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), `answered "HTTP/1.1 400 Bad Request", not 101 Switching Protocols`},
		{"wrong accept", write(upgrade + "Sec-WebSocket-Accept: c2FtZSBvbGQ=\r\n\r\n"), `Sec-WebSocket-Accept is "c2FtZSBvbGQ=", want`},
		{"no accept", write(upgrade + "\r\n"), `Sec-WebSocket-Accept is "", want`},
		{"no upgrade", write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ACCEPT\r\n\r\n"), `Upgrade is "", not websocket`},
		{"extension", write(upgrade + "Sec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"), `extensions "permessage-deflate"`},
		{"closed mid-response", write(upgrade), "closed the connection in the middle of its response"},
		{"closed", func(string, net.Conn) {}, "closed the connection without answering"},
		{"not HTTP", write("hello\n"), `not HTTP (it begins "hello\n`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := fakeWS(t, c.answer)
			_, err := Run(context.Background(), Config{Addrs: []string{addr}, WebSocket: true, Clients: 2, Senders: 1})
			var he *WSHandshakeError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "connecting client") {
				t.Fatalf("error %v; want a handshake error saying %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

// Against a chat server's TCP address, the error says so.
func TestWSHandshakeTCPAddress(t *testing.T) {
	srv := startServer(t, chat.Line) // it relays the request's lines back
	_, err := Run(context.Background(), Config{Addrs: []string{srv.Addr().String()}, WebSocket: true, Clients: 1, Senders: 1})
	if err == nil || !strings.Contains(err.Error(), "not HTTP") || !strings.Contains(err.Error(), "--ws-addr") {
		t.Fatalf("error %v; want one that says the answer is not HTTP", err)
	}
}

// Frames that come in the same read as the handshake's response are not
// lost.
func TestWSFramesWithResponse(t *testing.T) {
	cd, err := newWSCodec(DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	addr := fakeWS(t, func(key string, conn net.Conn) {
		resp := fmt.Appendf(nil, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
		resp = append(resp, serverFrame(true, wsText, cd.appendBody(nil, header{kind: kindProbe}))...)
		conn.Write(resp)
		io.Copy(io.Discard, conn)
	})
	rep, err := Idle(context.Background(), Config{Addrs: []string{addr}, WebSocket: true, Clients: 3, Duration: time.Millisecond, RegisterTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err) // registration needs the probe that came with the response
	}
	if rep.Failed() {
		t.Errorf("%d disconnected: %s", rep.Disconnected, rep.Disconnect)
	}
}

// A recordConn records what is written to it.
type recordConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordConn) Write(b []byte) (int, error) { return c.buf.Write(b) }

// newWSReceiver returns a WebSocket client of 2 senders that writes to a
// recordConn.
func newWSReceiver(t testing.TB) (*client, *recordConn) {
	cfg := Config{WebSocket: true, Clients: 2, Senders: 2}.withDefaults()
	r, err := newRun(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.from.Store(0)
	conn := &recordConn{}
	c := r.newClient(1, conn)
	c.ws = &wsClient{sendKey: 1, ctlKey: 2}
	return c, conn
}

// wsTestMessages returns the messages of testStream (every verdict of the
// checker, a probe) as the frames of a server, one of them fragmented
// with a ping among its fragments, and a ping at the end.
func wsTestMessages(t *testing.T) []byte {
	frames := testStream(t, chat.Frame)
	var out []byte
	for i := 0; len(frames) > 0; i++ {
		n := binary.BigEndian.Uint32(frames)
		msg := frames[4 : 4+n]
		frames = frames[4+n:]
		if i == 2 {
			out = append(out, serverFrame(false, wsBinary, msg[:10])...)
			out = append(out, serverFrame(true, wsPing, []byte("ping 1"))...)
			out = append(out, serverFrame(true, wsCont, msg[10:])...)
			continue
		}
		out = append(out, serverFrame(true, wsText, msg)...)
	}
	return append(out, serverFrame(true, wsPing, []byte("ping 2"))...)
}

// WebSocket messages split anywhere over reads are checked as when whole,
// and each ping is answered once, with its payload.
func TestWSReceiveSplit(t *testing.T) {
	b := wsTestMessages(t)
	receiveWS := func(chunks [][]byte) (received, []string) {
		c, conn := newWSReceiver(t)
		if err := c.readLoop(&chunkReader{chunks: chunks}); err != nil {
			t.Fatal(err)
		}
		c.publish()
		c.flushLatencies()
		c.chk.errs.Lost = c.chk.missing([]uint64{8, 7})
		var pongs []string
		br := bufio.NewReader(&conn.buf)
		for {
			h, payload, err := readClientFrame(br)
			if err == io.EOF {
				break
			}
			if err != nil || h.op != wsPong {
				t.Fatalf("the client wrote opcode %#x, %v; want pongs", h.op, err)
			}
			pongs = append(pongs, string(payload))
		}
		return received{errs: c.chk.errs, accounted: c.accounted, unheard: c.unheard, latencies: c.r.lat.merged().TotalCount()}, pongs
	}
	want, pongs := receiveWS([][]byte{bytes.Clone(b)})
	if exp := (Errors{Lost: 3, Duplicated: 1, Reordered: 1, Corrupted: 2}); want.errs != exp || want.accounted != 13 || want.unheard != 0 {
		t.Fatalf("whole stream: %+v, want errors %+v, 13 accounted, the probe heard", want, exp)
	}
	wantPongs := fmt.Sprint([]string{"ping 1", "ping 2"})
	if fmt.Sprint(pongs) != wantPongs {
		t.Fatalf("pongs %q, want %s", pongs, wantPongs)
	}
	for k := range len(b) + 1 {
		got, pongs := receiveWS([][]byte{bytes.Clone(b[:k]), bytes.Clone(b[k:])})
		if got != want || fmt.Sprint(pongs) != wantPongs {
			t.Fatalf("cut at byte %d of %d: %+v, pongs %q; want %+v, %s", k, len(b), got, pongs, want, wantPongs)
		}
	}
	if got, _ := receiveWS(split(bytes.Clone(b), 1)); got != want {
		t.Fatalf("a byte at a time: %+v, want %+v", got, want)
	}
}

// A close frame from the server, or a protocol error, ends the stream
// with an error that says so; the client answers with a close frame.
func TestWSReceiveClose(t *testing.T) {
	cases := []struct {
		frame []byte
		want  string
		code  uint16
	}{
		{serverFrame(true, wsClose, []byte("\x03\xe9going away")), `the server closed the WebSocket: status 1001 "going away"`, 1001},
		{serverFrame(true, wsClose, nil), "the server closed the WebSocket, with no status", 0},
		{serverFrame(true, 0x5, nil), "unknown opcode 0x5", 1002},
	}
	for _, tc := range cases {
		c, conn := newWSReceiver(t)
		err := c.readLoop(&chunkReader{chunks: [][]byte{tc.frame, serverFrame(true, wsText, []byte("never read"))}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
		h, payload, rerr := readClientFrame(bufio.NewReader(&conn.buf))
		switch {
		case rerr != nil || h.op != wsClose:
			t.Errorf("%q: the client wrote opcode %#x, %v; want a close", tc.want, h.op, rerr)
		case tc.code == 0 && len(payload) != 0, tc.code != 0 && (len(payload) != 2 || binary.BigEndian.Uint16(payload) != tc.code):
			t.Errorf("%q: the client's close says %x, want status %d", tc.want, payload, tc.code)
		}
	}
}

// Writing and checking WebSocket messages allocates nothing.
func TestWSAllocs(t *testing.T) {
	c, _ := newWSReceiver(t)
	c.in.buf = make([]byte, c.r.bufSize)
	c.ws.p.max = len(c.in.buf) - wsMaxHeader
	h := header{kind: kindData, sender: 0, time: 1}
	buf := make([]byte, 0, 16*c.r.codec.wire)
	if allocs := testing.AllocsPerRun(100, func() {
		buf = buf[:0]
		for range 16 {
			buf = c.appendMsg(buf, h)
			h.seq++
		}
	}); allocs != 0 {
		t.Errorf("%v allocations per 16 messages written, want 0", allocs)
	}
	if len(buf) != 16*c.r.codec.wire {
		t.Fatalf("16 messages of %d bytes on the wire written in %d bytes", c.r.codec.wire, len(buf))
	}
	// The same messages as a server sends them, read 16 at a time.
	var stream []byte
	for seq := range uint64(1 << 12) {
		stream = append(stream, serverFrame(true, wsText, c.r.codec.appendBody(nil, header{kind: kindData, sender: 1, seq: seq, time: 1}))...)
	}
	read := len(stream) >> 8
	off := 0
	next := func() {
		n := copy(c.in.buf[c.in.end:], stream[off:off+read])
		off += n
		if err := c.received(n); err != nil {
			t.Fatal(err)
		}
	}
	next() // the first latency batch
	if allocs := testing.AllocsPerRun(200, next); allocs != 0 {
		t.Errorf("%v allocations per read of 16 messages, want 0", allocs)
	}
	if c.chk.errs != (Errors{}) || c.accounted != int64(off/(read/16)) {
		t.Errorf("errors %+v, accounted %d of %d", c.chk.errs, c.accounted, off/(read/16))
	}
}

// The accept value of RFC 6455's example (section 1.3).
func TestWSAccept(t *testing.T) {
	if got, want := wsAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Errorf("accept of RFC 6455's key: %s, want %s", got, want)
	}
}

// BenchmarkWSReceive measures the receive path of a WebSocket client over
// one read of 16 messages, to set beside BenchmarkReceive's frames.
func BenchmarkWSReceive(b *testing.B) {
	c, _ := newWSReceiver(b)
	c.in.buf = make([]byte, c.r.bufSize)
	c.ws.p.max = len(c.in.buf) - wsMaxHeader
	var stream []byte
	for seq := range uint64(1 << 14) {
		stream = append(stream, serverFrame(true, wsText, c.r.codec.appendBody(nil, header{kind: kindData, sender: 1, seq: seq, time: 1}))...)
	}
	const batch = 16
	read := len(stream) >> 10
	off := 0
	b.ReportAllocs()
	b.SetBytes(int64(read))
	for b.Loop() {
		if off+read > len(stream) {
			off = 0
			clear(c.chk.next)
		}
		n := copy(c.in.buf[c.in.end:], stream[off:off+read])
		off += n
		c.received(n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
	if c.chk.errs != (Errors{}) {
		b.Errorf("errors %+v", c.chk.errs)
	}
}

// BenchmarkWSSend measures a sender's encoding of 8 messages as masked
// frames.
func BenchmarkWSSend(b *testing.B) {
	c, _ := newWSReceiver(b)
	h := header{kind: kindData, time: 1}
	buf := make([]byte, 0, 8*c.r.codec.wire)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for range 8 {
			buf = c.appendMsg(buf, h)
			h.seq++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*8), "ns/msg")
}
