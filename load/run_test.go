package load

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// startServer starts a chat server on a free loopback port.
func startServer(t testing.TB, f chat.Framing) *chat.Server {
	t.Helper()
	return serveChat(t, chat.Config{Addr: "127.0.0.1:0", Backend: "portable", Framing: f})
}

// serveChat starts a chat server of cfg, stopped at the test's end.
func serveChat(t testing.TB, cfg chat.Config) *chat.Server {
	t.Helper()
	srv, err := chat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

func TestRun(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		for _, rate := range []float64{0, 200} {
			name := f.String() + "/closed"
			if rate > 0 {
				name = f.String() + "/open"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := startServer(t, f)
				rep, err := Run(context.Background(), Config{
					Addrs:      []string{srv.Addr().String()},
					Framing:    f,
					Clients:    20,
					Senders:    3,
					Rate:       rate,
					Duration:   time.Second,
					Warmup:     100 * time.Millisecond,
					ServerPIDs: []int{os.Getpid()},
				})
				if err != nil {
					t.Fatal(err)
				}
				checkDelivered(t, rep)
				if rep.Latency.Count == 0 || rep.Latency.Max < rep.Latency.P50 {
					t.Errorf("latency %+v", rep.Latency)
				}
				if rep.Server == nil || rep.Server.Err != "" || rep.Server.RSS <= 0 {
					t.Errorf("server usage %+v", rep.Server)
				}
				checkDriver(t, rep)
			})
		}
	}
}

func TestIdle(t *testing.T) {
	srv := startServer(t, chat.Frame)
	// The server's memory is this process's: start from as little as can be.
	runtime.GC()
	debug.FreeOSMemory()
	rep, err := Idle(context.Background(), Config{
		Addrs:      []string{srv.Addr().String()},
		Clients:    300,
		Duration:   200 * time.Millisecond,
		ServerPIDs: []int{os.Getpid()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() {
		t.Errorf("%d disconnected: %s", rep.Disconnected, rep.Disconnect)
	}
	s := rep.Server
	if s == nil || s.Err != "" || s.RSSPerConn <= 0 || s.ThreadsBefore <= 0 || s.ThreadsAfter <= 0 {
		t.Errorf("server usage %+v", s)
	}
}

// A mangler sees each message that the server sends to one client (n
// counts them from 1) and returns what to forward in its place.
type mangler func(n int, msg []byte) [][]byte

// A relay between clients and a frame server that mangles what the server
// sends, with one mangler per connection from newMangler.
type relay struct {
	newMangler func() mangler
}

func startRelay(t testing.TB, upstream string, newMangler func() mangler) string {
	t.Helper()
	r := &relay{newMangler: newMangler}
	return proxyTCP(t, upstream, func(int) (toUp, toDown func(down, up net.Conn)) {
		return func(down, up net.Conn) { io.Copy(up, down) }, func(down, up net.Conn) { r.forward(down, up) }
	})
}

// proxyTCP relays every connection made to the address it returns to
// upstream, until the test ends. For the i-th connection (from 0) it
// runs the two halves that pipe gives: toUp copies from the client (down)
// to the server (up), toDown the other way; when one returns, the side it
// wrote to is closed.
func proxyTCP(t testing.TB, upstream string, pipe func(i int) (toUp, toDown func(down, up net.Conn))) string {
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
			toUp, toDown := pipe(i)
			wg.Add(2)
			go func() { defer wg.Done(); toUp(down, up); up.Close() }()
			go func() { defer wg.Done(); toDown(down, up); down.Close() }()
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

// forward copies frames from up to down through a mangler.
func (r *relay) forward(down io.Writer, up io.Reader) {
	mangle := r.newMangler()
	br := bufio.NewReader(up)
	bw := bufio.NewWriter(down)
	for n := 1; ; n++ {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		msg := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
		copy(msg, hdr[:])
		if _, err := io.ReadFull(br, msg[4:]); err != nil {
			return
		}
		for _, m := range mangle(n, msg) {
			bw.Write(m)
		}
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// Against a relay that loses, duplicates, reorders or corrupts one message
// in a hundred, the run notices.
func TestRunDetects(t *testing.T) {
	cases := []struct {
		name  string
		every mangler // applied to every 100th message
		check func(Errors) bool
	}{
		{"loss", func(n int, m []byte) [][]byte { return nil },
			func(e Errors) bool { return e.Lost > 0 }},
		{"duplicate", func(n int, m []byte) [][]byte { return [][]byte{m, m} },
			func(e Errors) bool { return e.Duplicated > 0 }},
		{"corruption", func(n int, m []byte) [][]byte { m[len(m)-1] ^= 1; return [][]byte{m} },
			func(e Errors) bool { return e.Corrupted > 0 }},
		{"reorder", nil, // holds the 100th message back until 10 more have gone
			func(e Errors) bool { return e.Reordered > 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, chat.Frame)
			addr := startRelay(t, srv.Addr().String(), func() mangler {
				var held []byte
				return func(n int, m []byte) [][]byte {
					switch {
					case tc.every != nil && n%100 == 0:
						return tc.every(n, m)
					case tc.every == nil && n%100 == 0:
						held = m
						return nil
					case held != nil && n%100 == 10:
						out := [][]byte{m, held}
						held = nil
						return out
					}
					return [][]byte{m}
				}
			})
			// Open loop: 300 messages per receiver, however slow the machine.
			rep, err := Run(context.Background(), Config{
				Addrs:        []string{addr},
				Clients:      10,
				Senders:      2,
				Rate:         300,
				Duration:     500 * time.Millisecond,
				DrainTimeout: time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("sent %d, delivered %d, errors %+v", rep.Sent, rep.Delivered, rep.Errors)
			if !rep.Failed() || !tc.check(rep.Errors) {
				t.Errorf("errors %+v: the %s went unnoticed", rep.Errors, tc.name)
			}
		})
	}
}

// checkDelivered fails the test unless the run counted no error and every
// message sent reached every client before the drain ended.
func checkDelivered(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Failed() {
		t.Errorf("errors: %+v (%s)", rep.Errors, rep.Disconnect)
	}
	if rep.Sent == 0 || rep.Delivered != rep.Sent*int64(rep.Clients) {
		t.Errorf("sent %d, delivered %d; want a positive number sent, delivered %d times", rep.Sent, rep.Delivered, rep.Clients)
	}
	if rep.DrainTimedOut {
		t.Error("the drain timed out")
	}
}

// checkDriver checks the driver's usage in a report against a real server.
func checkDriver(t *testing.T, rep *Report) {
	t.Helper()
	d := rep.Driver
	switch {
	case d == nil:
		t.Fatal("no driver usage")
	case d.Err != "":
		t.Errorf("driver usage: %s", d.Err)
	case d.User+d.System <= 0 || d.CPUSeconds != (d.User+d.System).Seconds():
		t.Errorf("driver CPU %v user + %v system, %g s", d.User, d.System, d.CPUSeconds)
	case d.CPUPercent <= 0 || d.CPUPercent > 100*float64(d.GOMAXPROCS)*1.5:
		t.Errorf("driver CPU %.1f%% of a core, with GOMAXPROCS %d", d.CPUPercent, d.GOMAXPROCS)
	case d.CPUPerDelivery <= 0 || d.CPUPerDelivery != float64(d.User+d.System)/float64(rep.Deliveries):
		t.Errorf("driver CPU %g ns per delivery, %v over %d deliveries", d.CPUPerDelivery, d.User+d.System, rep.Deliveries)
	case d.Reads <= 0 || d.Reads > rep.Deliveries+int64(rep.Clients) || d.DeliveriesPerRead < 1:
		t.Errorf("%d reads, %g deliveries per read, for %d deliveries", d.Reads, d.DeliveriesPerRead, rep.Deliveries)
	case d.EmptyReads < 0 || d.MaxRSS < 0 || (runtime.GOOS == "linux" && d.MaxRSS == 0):
		t.Errorf("%d empty reads, max RSS %d", d.EmptyReads, d.MaxRSS)
	}
}
