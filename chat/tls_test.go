package chat

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cport.dev/cport/internal/testcert"
)

// TLS clients (Config.TLS): the same chat inside a TLS stream, on every
// backend, with the limits of a plain client.

var (
	testCertOnce sync.Once
	testCert     tls.Certificate
	testCertPool *x509.CertPool
	testCertErr  error
)

// testTLS returns a server's TLS config with a self-signed certificate for
// 127.0.0.1, ::1 and localhost, and a client's that trusts it.
func testTLS(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	testCertOnce.Do(func() { testCert, testCertPool, testCertErr = testcert.New() })
	if testCertErr != nil {
		tb.Fatal(testCertErr)
	}
	return &tls.Config{Certificates: []tls.Certificate{testCert}},
		&tls.Config{RootCAs: testCertPool, ServerName: "127.0.0.1"}
}

// tlsConfig returns s's Config with TLS on.
func (s setup) tlsConfig(tb testing.TB) Config {
	cfg := s.config()
	cfg.TLS, _ = testTLS(tb)
	return cfg
}

// dialTLS connects a TLS client to ts and completes its handshake; it is
// closed when the test ends.
func (ts *testServer) dialTLS(name string, mode readMode) *client {
	ts.tb.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr(), longWait)
	if err != nil {
		ts.tb.Fatalf("%s: dial %s: %v", name, ts.addr(), err)
	}
	_, ccfg := testTLS(ts.tb)
	tc := tls.Client(nc, ccfg)
	tc.SetDeadline(time.Now().Add(longWait))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		ts.tb.Fatalf("%s: TLS handshake: %v", name, err)
	}
	tc.SetDeadline(time.Time{})
	return newClient(ts.tb, nc.(*net.TCPConn), tc, name, mode)
}

// tlsFramings are the framings the TLS tests run with: raw cuts messages
// where a TLS record's plaintext ends, which the tests' checks of raw
// streams allow for, but these tests count messages.
var tlsFramings = []Framing{Line, Frame}

// TestTLSRelay checks that TLS clients chat as plain ones do: every
// message reaches every client, exactly as sent, and the stats count them.
func TestTLSRelay(t *testing.T) {
	runMatrix(t, tlsFramings, func(t *testing.T, s setup) {
		srv := startServer(t, s.tlsConfig(t))
		cs := []*client{srv.dialTLS("a", keepReads), srv.dialTLS("b", keepReads), srv.dialTLS("c", keepReads)}
		srv.waitActive(3)
		var want []byte
		for _, c := range cs {
			m := encode(s.framing, "hello from "+c.name)
			c.send(m)
			want = append(want, m...)
			for _, r := range cs {
				r.expect(want)
			}
		}
		st := srv.waitStats("3 messages relayed to 3 clients", func(st Stats) bool {
			return st.Relayed >= 3 && st.Deliveries >= 9
		})
		if st.Relayed != 3 || st.Deliveries != 9 || st.Accepted != 3 || st.HandshakeFailures != 0 {
			t.Errorf("stats %+v; want 3 messages relayed, 9 deliveries, 3 accepted, no handshake failure", st)
		}
	})
}

// TestTLSFlood checks a flood through TLS: large and small messages, in
// order, to every client, none lost.
func TestTLSFlood(t *testing.T) {
	runMatrix(t, tlsFramings, func(t *testing.T, s setup) {
		cfg := s.tlsConfig(t)
		cfg.SendQueue = 4 << 20
		srv := startServer(t, cfg)
		fl := srv.dialTLS("flooder", keepReads)
		cs := []*client{fl, srv.dialTLS("reader1", keepReads), srv.dialTLS("reader2", keepReads)}
		srv.waitActive(len(cs))
		g := msgGen{f: s.framing, minPad: 0, maxPad: 20 << 10}
		res := flood(fl, g, 0, scale(1000, 200), cs, 1<<20, nil)
		if res.err != nil {
			t.Fatal(res.err)
		}
		for _, c := range cs {
			if err := c.waitN(res.bytes); err != nil {
				t.Fatal(err)
			}
			data, _, _ := c.received()
			if _, err := g.check(data, map[int]int{0: res.sent}, false); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
	})
}

// TestTLSPlainClient checks that a client that does not speak TLS fails
// its handshake alone: it is closed, counted and logged, and the TLS
// clients chat on.
func TestTLSPlainClient(t *testing.T) {
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		srv := startServer(t, s.tlsConfig(t))
		a, b := srv.dialTLS("a", keepReads), srv.dialTLS("b", keepReads)
		plain := srv.dial("plain", keepReads)
		plain.send([]byte("hello in the clear\n"))
		if err := plain.waitEnd(); err == nil {
			t.Fatal("the plain client's stream did not end")
		}
		srv.waitStats("a handshake failure", func(st Stats) bool { return st.HandshakeFailures == 1 })
		line := srv.waitLog("TLS handshake failed", "peer="+plain.localAddr()+" ")
		if !strings.Contains(line, "err=") {
			t.Errorf("log line %q; want the handshake's error", line)
		}
		srv.waitActive(2)
		m := encode(s.framing, "still private")
		a.send(m)
		a.expect(m)
		b.expect(m)
		if _, n, _ := plain.received(); n > 0 {
			got, _, _ := plain.received()
			if bytes.Contains(got, []byte("private")) {
				t.Errorf("the plain client received %q", got)
			}
		}
		if st := srv.Stats(); st.Accepted != 2 || st.ConnErrors != 0 {
			t.Errorf("stats %+v; want 2 accepted (the handshake failure is not a client), no connection error", st)
		}
	})
}

// TestTLSHandshakeTimeout checks that a client that connects and says
// nothing is closed after TLSHandshakeTimeout, without holding anyone up.
func TestTLSHandshakeTimeout(t *testing.T) {
	runMatrix(t, []Framing{Frame}, func(t *testing.T, s setup) {
		cfg := s.tlsConfig(t)
		cfg.TLSHandshakeTimeout = 200 * time.Millisecond
		srv := startServer(t, cfg)
		mute := srv.dial("mute", keepReads)
		a := srv.dialTLS("a", keepReads)
		srv.waitActive(1)
		m := encode(s.framing, "meanwhile")
		a.send(m)
		a.expect(m)
		if err := mute.waitEnd(); err == nil {
			t.Fatal("the mute client's stream did not end")
		}
		srv.waitStats("a handshake failure", func(st Stats) bool { return st.HandshakeFailures == 1 })
		srv.waitLog("TLS handshake failed", "peer="+mute.localAddr()+" ", "timeout")
	})
}

// TestTLSHalfClose checks that a TLS client that sends a message and then
// its close_notify (and FIN) still receives its echo and the room's
// messages, then a close_notify of the server's.
func TestTLSHalfClose(t *testing.T) {
	runMatrix(t, tlsFramings, func(t *testing.T, s setup) {
		cfg := s.tlsConfig(t)
		cfg.HalfCloseTimeout = longWait
		srv := startServer(t, cfg)
		a, b := srv.dialTLS("a", keepReads), srv.dialTLS("b", keepReads)
		srv.waitActive(2)
		ma := encode(s.framing, "last words")
		a.send(ma)
		if err := a.stream.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if err := a.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		a.expect(ma)
		b.expect(ma)
		srv.waitStats("a half-closed client", func(st Stats) bool { return st.HalfClosed == 1 })
		mb := encode(s.framing, "still listening?")
		b.send(mb)
		a.expect(concat(ma, mb))
		b.expect(concat(ma, mb))
		// Shutdown ends it gracefully: the server's close_notify, then EOF.
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.waitEnd(); !errors.Is(err, io.EOF) {
			t.Errorf("a's stream ended with %v; want EOF after the server's close_notify", err)
		}
	})
}

// TestTLSSlowConsumer checks that a TLS client that does not read is
// disconnected once its send queue stalls (the plaintext waiting for its
// writer counts), while the others receive everything.
func TestTLSSlowConsumer(t *testing.T) {
	runMatrix(t, tlsFramings, func(t *testing.T, s setup) {
		cfg := s.tlsConfig(t)
		cfg.SendQueue = 64 << 10
		cfg.MaxMessage = 16 << 10
		cfg.WriteTimeout = time.Second // the flood's pace is the room's: the queue stalls rather than fills
		srv := startServer(t, cfg)
		fl := srv.dialTLS("flooder", keepReads)
		r1 := srv.dialTLS("reader1", keepReads)
		slow := srv.dialTLS("slow", noReads)
		srv.waitActive(3)
		g := msgGen{f: s.framing, minPad: 100, maxPad: 400}
		stop := make(chan struct{})
		res := make(chan floodResult, 1)
		go func() { res <- flood(fl, g, 0, 0, []*client{fl, r1}, 32<<10, stop) }()
		srv.waitStats("a slow consumer", func(st Stats) bool { return st.SlowConsumers > 0 })
		err := r1.waitN(r1.count() + 256<<10)
		close(stop)
		fr := <-res
		if err != nil {
			t.Fatal(err)
		}
		if fr.err != nil {
			t.Fatal(fr.err)
		}
		for _, c := range []*client{fl, r1} {
			if err := c.waitN(fr.bytes); err != nil {
				t.Fatal(err)
			}
			data, _, _ := c.received()
			if _, err := g.check(data, map[int]int{0: fr.sent}, false); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		srv.waitLog("client disconnected", "peer="+slow.localAddr()+" ", "slow consumer")
		srv.waitActive(2)
	})
}

// TestTLSMaxConns checks that MaxConns counts TLS clients, those in their
// handshake included.
func TestTLSMaxConns(t *testing.T) {
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.tlsConfig(t)
		cfg.MaxConns = 2
		srv := startServer(t, cfg)
		a, b := srv.dialTLS("a", keepReads), srv.dialTLS("b", keepReads)
		srv.waitActive(2)
		nc, err := net.DialTimeout("tcp", srv.addr(), longWait)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_, ccfg := testTLS(t)
		tc := tls.Client(nc, ccfg)
		tc.SetDeadline(time.Now().Add(longWait))
		herr := tc.Handshake()
		if herr == nil {
			_, herr = tc.Read(make([]byte, 1))
		}
		if herr == nil || errors.Is(herr, context.DeadlineExceeded) {
			t.Fatalf("the third client: %v; want its connection closed", herr)
		}
		srv.waitStats("1 refused", func(st Stats) bool { return st.Refused == 1 })
		m := encode(s.framing, "two of us")
		a.send(m)
		a.expect(m)
		b.expect(m)
	})
}

// TestTLSShutdownDelivers shuts a server down while a TLS client floods
// it: every client's stream is an unbroken run of the flood's first
// messages, the same for all, ended by the server's close_notify.
func TestTLSShutdownDelivers(t *testing.T) {
	runMatrix(t, tlsFramings, func(t *testing.T, s setup) {
		shutdownDelivers(t, s.tlsConfig(t), s.framing, (*testServer).dialTLS, true) // the readers' end: the server's close_notify
	})
}

// TestTLSConfigNoCertificate checks that a TLS config with no certificate
// is refused by New.
func TestTLSConfigNoCertificate(t *testing.T) {
	_, err := New(Config{Addr: "127.0.0.1:0", TLS: &tls.Config{}})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "TLS" {
		t.Fatalf("New with a TLS config without certificate: %v; want a ConfigError for TLS", err)
	}
}

// TestTLSIdleCloseNotify checks that a TLS client closed for idleness is
// closed as TLS closes, by its writer: close_notify, then FIN. (It was
// closed on its connection, under a writer that might still have had
// messages queued, and got a bare FIN.) The client speaks TLS 1.2, whose
// alert records carry their type in the clear.
func TestTLSIdleCloseNotify(t *testing.T) {
	runMatrix(t, tlsFramings, func(t *testing.T, s setup) {
		cfg := s.tlsConfig(t)
		cfg.IdleTimeout = 200 * time.Millisecond
		srv := startServer(t, cfg)
		nc, err := net.DialTimeout("tcp", srv.addr(), longWait)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		rec := &recordTypes{Conn: nc}
		_, ccfg := testTLS(t)
		ccfg.MaxVersion = tls.VersionTLS12
		tc := tls.Client(rec, ccfg)
		tc.SetDeadline(time.Now().Add(longWait))
		if _, err := io.Copy(io.Discard, tc); err != nil {
			t.Fatalf("the idle client's stream ended with %v; want a graceful end", err)
		}
		if last := rec.last(); last != recordAlert {
			t.Errorf("the last TLS record before the end was of type %d; want an alert (%d), close_notify", last, recordAlert)
		}
		if line := srv.waitLog("client disconnected", "peer="+nc.LocalAddr().String()+" "); !strings.Contains(line, "idle timeout") {
			t.Errorf("log line %q; want the reason: idle timeout", line)
		}
	})
}

// recordAlert is the content type of a TLS alert record.
const recordAlert = 21

// recordTypes is a connection that notes the type of each TLS record read
// through it (TLS 1.2: a record's header is in the clear).
type recordTypes struct {
	net.Conn
	mu    sync.Mutex
	head  []byte // the header being read
	left  int    // bytes of the current record's body still to come
	types []byte
}

func (r *recordTypes) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for b := p[:n]; len(b) > 0; {
		if r.left > 0 {
			k := min(r.left, len(b))
			r.left -= k
			b = b[k:]
			continue
		}
		k := min(5-len(r.head), len(b))
		r.head = append(r.head, b[:k]...)
		b = b[k:]
		if len(r.head) == 5 {
			r.types = append(r.types, r.head[0])
			r.left = int(r.head[3])<<8 | int(r.head[4])
			r.head = r.head[:0]
		}
	}
	return n, err
}

// last returns the type of the last record whose header was read.
func (r *recordTypes) last() byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.types) == 0 {
		return 0
	}
	return r.types[len(r.types)-1]
}
