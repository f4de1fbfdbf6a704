package chat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster mode, for real: embedded NATS servers with JetStream, cport
// servers relaying through them, plain TCP clients on each.

// startNATS starts a NATS cluster of n servers with JetStream on loopback
// ports and returns them; they are shut down when the test ends.
//
// Every server must know the others' route ports before any starts, so
// they are chosen ahead: below the kernel's ephemeral range, where no
// outgoing connection of this or another test can take one in the
// meantime. Should another listener have taken one all the same, the
// server says so (a fatal error on its logger, and it is never ready), and
// the cluster is started again on other ports.
func startNATS(t *testing.T, n int) []*natsserver.Server {
	t.Helper()
	for try := 1; ; try++ {
		nodes, err := tryNATS(t, n)
		if err == nil {
			return nodes
		}
		for _, ns := range nodes {
			ns.Shutdown()
		}
		if try == 3 {
			t.Fatal(err)
		}
		t.Logf("%v; starting the NATS cluster again", err)
	}
}

func tryNATS(t *testing.T, n int) ([]*natsserver.Server, error) {
	routes := make([]*url.URL, n)
	ports := make([]int, n)
	for i := range n {
		ports[i] = routePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	var nodes []*natsserver.Server
	var logs []*natsLog
	for i := range n {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
		}
		if n > 1 {
			o.Cluster = natsserver.ClusterOpts{Name: "nc", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = routes
		}
		ns, err := natsserver.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		log := &natsLog{}
		ns.SetLoggerV2(log, false, false, false)
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		nodes = append(nodes, ns)
		logs = append(logs, log)
	}
	for i, ns := range nodes {
		deadline := time.Now().Add(longWait)
		for !ns.ReadyForConnections(100 * time.Millisecond) {
			if f := logs[i].fatal(); f != "" {
				return nodes, fmt.Errorf("NATS server %d: %s", i+1, f)
			}
			if time.Now().After(deadline) {
				t.Fatalf("NATS server %d not ready after %v", i+1, longWait)
			}
		}
	}
	return nodes, nil
}

// routePort returns a loopback port that was free a moment ago, below the
// ephemeral range (32768 and up on Linux, 49152 and up on Windows).
func routePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port in 20000-31999")
	return 0
}

// A natsLog is an embedded NATS server's logger that keeps its first fatal
// error (a listener it could not open) and drops the rest.
type natsLog struct {
	mu  sync.Mutex
	msg string
}

func (l *natsLog) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

func (l *natsLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msg == "" {
		l.msg = fmt.Sprintf(format, v...)
	}
}

func (l *natsLog) Noticef(string, ...any) {}
func (l *natsLog) Warnf(string, ...any)   {}
func (l *natsLog) Errorf(string, ...any)  {}
func (l *natsLog) Debugf(string, ...any)  {}
func (l *natsLog) Tracef(string, ...any)  {}

func natsURLs(nodes []*natsserver.Server) string {
	var urls []string
	for _, ns := range nodes {
		urls = append(urls, ns.ClientURL())
	}
	return strings.Join(urls, ",")
}

// startMember starts a cport server of the cluster reached at urls, and
// waits until its bus relays.
func startMember(t *testing.T, addr, urls string, replicas int) *testServer {
	t.Helper()
	ts := startServer(t, Config{Addr: addr, Framing: Frame, NATS: urls, Cluster: "test", NATSReplicas: replicas, NATSMaxAge: 30 * time.Second})
	ts.waitLog("bus: relaying")
	return ts
}

// A chatter is a frame client that checks what arrives: every sender's
// messages in order, none twice, none missing.
type chatter struct {
	conn net.Conn
	mu   sync.Mutex
	next map[int]int // sender -> next sequence expected
	n    int
	bad  []string
	done chan struct{}
}

const chatMsgSize = 64

func chatMsg(sender, seq int) []byte {
	b := make([]byte, 4, 4+chatMsgSize)
	binary.BigEndian.PutUint32(b, chatMsgSize)
	b = fmt.Appendf(b, "%04d:%08d:", sender, seq)
	for len(b) < 4+chatMsgSize {
		b = append(b, 'x')
	}
	return b
}

func dialChatter(t *testing.T, addr string) *chatter {
	t.Helper()
	var conn net.Conn
	var err error
	for try := 0; try < 50; try++ { // a restarted server may not listen yet
		if conn, err = net.DialTimeout("tcp", addr, longWait); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &chatter{conn: conn, next: make(map[int]int), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *chatter) read() {
	defer close(c.done)
	buf := make([]byte, 4+chatMsgSize)
	for {
		if _, err := io.ReadFull(c.conn, buf); err != nil {
			return
		}
		var sender, seq int
		if _, err := fmt.Sscanf(string(buf[4:18]), "%04d:%08d", &sender, &seq); err != nil || binary.BigEndian.Uint32(buf) != chatMsgSize {
			c.fail(fmt.Sprintf("garbled message %q", buf))
			return
		}
		c.mu.Lock()
		if want := c.next[sender]; seq != want {
			c.bad = append(c.bad, fmt.Sprintf("sender %d: got seq %d, want %d", sender, seq, want))
		}
		c.next[sender] = seq + 1
		c.n++
		c.mu.Unlock()
	}
}

func (c *chatter) fail(s string) {
	c.mu.Lock()
	c.bad = append(c.bad, s)
	c.mu.Unlock()
}

func (c *chatter) count() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, append([]string(nil), c.bad...)
}

// send sends sender's messages from seq to seq+n-1, a few at a time.
func (c *chatter) send(t *testing.T, sender, from, n int) {
	var b []byte
	for seq := from; seq < from+n; seq++ {
		b = append(b, chatMsg(sender, seq)...)
		if len(b) >= 5*(4+chatMsgSize) || seq == from+n-1 {
			if _, err := c.conn.Write(b); err != nil {
				t.Errorf("sender %d: %v", sender, err)
				return
			}
			b = b[:0]
			time.Sleep(time.Millisecond)
		}
	}
}

// waitAll waits until every chatter got want messages, and checks them.
func waitAll(t *testing.T, cs []*chatter, want int, servers ...*testServer) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for _, c := range cs {
		for {
			n, bad := c.count()
			if len(bad) > 0 {
				t.Fatalf("client %s: %d errors, first: %s", c.conn.LocalAddr(), len(bad), bad[0])
			}
			if n > want {
				t.Fatalf("client %s: got %d messages, want %d", c.conn.LocalAddr(), n, want)
			}
			if n == want {
				break
			}
			if time.Now().After(deadline) {
				for _, s := range servers {
					t.Logf("%s: %+v %+v", s.addr(), s.Stats(), s.BusStats())
				}
				t.Fatalf("client %s: got %d messages after %v, want %d", c.conn.LocalAddr(), n, longWait, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // nothing more arrives
	for _, c := range cs {
		if n, _ := c.count(); n != want {
			t.Fatalf("client %s: got %d messages, want %d", c.conn.LocalAddr(), n, want)
		}
	}
}

// clusterRun starts servers cport servers on nodes, clients per server of
// which senders per server send msgs messages each; during is called once
// half of them are sent.
func clusterRun(t *testing.T, urls string, replicas, servers, clients, senders, msgs int, during func()) []*testServer {
	var ss []*testServer
	var cs []*chatter
	for range servers {
		ts := startMember(t, "", urls, replicas)
		ss = append(ss, ts)
		for range clients {
			cs = append(cs, dialChatter(t, ts.addr()))
		}
		ts.waitActive(clients)
	}
	var wg sync.WaitGroup
	half := make(chan struct{}, servers*senders)
	resume := make(chan struct{})
	id := 0
	for si := range servers {
		for k := range senders {
			c := cs[si*clients+k]
			sender := id
			id++
			wg.Go(func() {
				c.send(t, sender, 0, msgs/2)
				half <- struct{}{}
				<-resume
				c.send(t, sender, msgs/2, msgs-msgs/2)
			})
		}
	}
	for range servers * senders {
		<-half
	}
	if during != nil {
		during()
	}
	close(resume)
	wg.Wait()
	waitAll(t, cs, servers*senders*msgs, ss...)
	for _, s := range ss {
		bs := s.BusStats()
		if bs.Dropped != 0 || bs.Missed != 0 || bs.Refused != 0 {
			t.Errorf("%s: bus stats %+v", s.addr(), bs)
		}
		// The lag of the last message read: stored some time before, and
		// what was stored after it, none of which is negative.
		if bs.Received > 0 && (bs.Lag <= 0 || bs.Lag > longWait || bs.Pending < 0) {
			t.Errorf("%s: the relay's lag: %v, %d messages pending; want a positive time under %v", s.addr(), bs.Lag, bs.Pending, longWait)
		}
		t.Logf("%s: %+v", s.addr(), bs)
	}
	return ss
}

// Three NATS nodes, three cport servers, clients on each: every client gets
// every message once, in per-sender order.
func TestClusterRelay(t *testing.T) {
	nodes := startNATS(t, 3)
	clusterRun(t, natsURLs(nodes), 3, 3, 4, 2, scale(400, 100), nil)
}

// One NATS node is killed mid-run: nothing is lost.
func TestClusterNATSNodeKilled(t *testing.T) {
	nodes := startNATS(t, 3)
	clusterRun(t, natsURLs(nodes), 3, 3, 3, 2, scale(400, 100), func() {
		nodes[0].Shutdown()
	})
}

// The NATS side is unreachable for two seconds; messages sent meanwhile
// all arrive once it returns.
func TestClusterNATSOutage(t *testing.T) {
	nodes := startNATS(t, 1)
	px := startProxy(t, nodes[0].Addr().String())
	ss := clusterRun(t, "nats://"+px.addr(), 1, 2, 3, 2, scale(400, 100), func() {
		px.cut(2 * time.Second)
	})
	for _, s := range ss { // one health line each way
		s.waitLog("bus: relay down")
		s.waitLog("bus: relay resumed")
		for _, what := range []string{"bus connected", "bus disconnected", "bus reconnected"} {
			if n := len(s.log.lines(what)); n != 1 {
				t.Errorf("%s: %d lines %q, want 1:\n%s", s.addr(), n, what, s.log.tail(20))
			}
		}
	}
}

// A cport server restarted: its clients reconnect and go on.
func TestClusterServerRestart(t *testing.T) {
	nodes := startNATS(t, 1)
	urls := natsURLs(nodes)
	a := startMember(t, "", urls, 1)
	b := startMember(t, "", urls, 1)
	ca := dialChatter(t, a.addr())
	cb := dialChatter(t, b.addr())
	a.waitActive(1)
	b.waitActive(1)

	// Foreign and malformed messages on the subject: dropped, counted.
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, m := range [][]byte{[]byte("hello"), busMsg(Line, 42, 1, []byte("a\n")), busMsg(Frame, 42, 1, []byte{0, 0, 1})} {
		if _, err := nc.Request("cport.test.relay", m, longWait); err != nil {
			t.Fatal(err)
		}
	}
	a.waitStats("bus drops", func(Stats) bool { return a.BusStats().Dropped == 3 })
	b.waitStats("bus drops", func(Stats) bool { return b.BusStats().Dropped == 3 })

	ca.send(t, 0, 0, 50)
	cb.send(t, 1, 0, 50)
	waitAll(t, []*chatter{ca, cb}, 100, a, b)

	addr := b.addr()
	b.Close()
	if err := b.waitServe(); err != nil {
		t.Fatal(err)
	}
	<-cb.done // the client sees its server go
	a.waitLog("bus: server left")
	var b2 *testServer
	for try := 0; ; try++ {
		srv, err := New(Config{Addr: addr})
		if err == nil {
			srv.Close()
			break
		}
		if try == 50 {
			t.Fatalf("cannot listen again on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b2 = startMember(t, addr, urls, 1)
	cb2 := dialChatter(t, addr)
	b2.waitActive(1)
	ca.mu.Lock()
	ca.n = 0
	ca.mu.Unlock()
	cb2.mu.Lock()
	cb2.next[0], cb2.next[1] = 50, 50 // it joined after the first 50 of each
	cb2.mu.Unlock()
	ca.send(t, 0, 50, 50)
	cb2.send(t, 1, 50, 50)
	waitAll(t, []*chatter{ca, cb2}, 100, a, b2)
}

// A proxy is a TCP proxy to NATS that can cut the way for a while.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	down   time.Time // refuse connections until then
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.closeAll() })
	go p.accept()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := time.Now().Before(p.down)
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close(); c.Close() }()
		go func() { io.Copy(c, u); u.Close(); c.Close() }()
	}
}

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// cut closes every connection and refuses new ones for d, then returns.
func (p *proxy) cut(d time.Duration) {
	p.mu.Lock()
	p.down = time.Now().Add(d)
	p.mu.Unlock()
	p.closeAll()
	time.Sleep(d)
}

// One server cut off from NATS for longer than the stream keeps messages:
// what aged out is logged and counted as missed, and relaying goes on.
func TestClusterOutageBeyondRetention(t *testing.T) {
	nodes := startNATS(t, 1)
	pb := startProxy(t, nodes[0].Addr().String())
	cfg := Config{Framing: Frame, Cluster: "short", NATSMaxAge: 300 * time.Millisecond}
	cfg.NATS = natsURLs(nodes)
	a := startServer(t, cfg)
	a.waitLog("bus: relaying")
	cfg.NATS = "nats://" + pb.addr()
	b := startServer(t, cfg)
	b.waitLog("bus: relaying")
	ca := dialChatter(t, a.addr())
	a.waitActive(1)

	ca.send(t, 0, 0, 10)
	b.waitStats("first relay", func(Stats) bool { return b.BusStats().Delivered > 0 })
	done := make(chan struct{})
	go func() { pb.cut(2 * time.Second); close(done) }()
	time.Sleep(100 * time.Millisecond) // b is cut off
	ca.send(t, 0, 10, 10)              // ages out before b is back
	<-done
	b.waitLog("bus reconnected")
	// Once b reads the stream again, a's next message shows the gap.
	for i := 20; b.BusStats().Missed == 0; i++ {
		if i > 20+int(longWait/(50*time.Millisecond)) {
			t.Fatalf("no missed messages counted: %+v", b.BusStats())
		}
		ca.send(t, 0, i, 1)
		time.Sleep(50 * time.Millisecond)
	}
	b.waitLog("bus: messages missed")
	// Relaying goes on at once: a's next message reaches b.
	st := b.BusStats()
	ca.send(t, 0, 1000, 1)
	b.waitStats("relay after the gap", func(Stats) bool { return b.BusStats().Delivered > st.Delivered })
	if st := b.BusStats(); st.Missed < 1 || st.Missed > 10 || st.Lost < 10 { // the 10 sent while b was cut off, in 1 to 10 batches
		t.Errorf("b: %+v; want Missed in 1..10, Lost 10 or more", st)
	}
}

// startNATSAt starts one NATS server with JetStream on port (-1: any) and
// store directory dir; it is shut down when the test ends.
func startNATSAt(t *testing.T, port int, dir string) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{ServerName: "n1", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(longWait) {
		t.Fatal("NATS server not ready")
	}
	return ns
}

// NATS restarts (stopped, started again on its port and store) while two
// cport servers relay through it: the relay resumes by itself, and nothing
// is lost. With memory storage the stream is gone after the restart: the
// servers create it again and read it anew.
func TestClusterNATSRestart(t *testing.T) {
	for _, storage := range []string{"file", "memory"} {
		t.Run(storage, func(t *testing.T) {
			dir := t.TempDir()
			ns := startNATSAt(t, -1, dir)
			port := ns.Addr().(*net.TCPAddr).Port
			cfg := Config{Framing: Frame, NATS: ns.ClientURL(), Cluster: "restart", NATSStorage: storage, NATSMaxAge: 30 * time.Second}
			a, b := startServer(t, cfg), startServer(t, cfg)
			a.waitLog("bus: relaying", "storage="+storage)
			b.waitLog("bus: relaying", "storage="+storage)
			ca, cb := dialChatter(t, a.addr()), dialChatter(t, b.addr())
			a.waitActive(1)
			b.waitActive(1)
			msgs := scale(200, 50)
			ca.send(t, 0, 0, msgs)
			cb.send(t, 1, 0, msgs)
			waitAll(t, []*chatter{ca, cb}, 2*msgs, a, b)

			ns.Shutdown()
			ns.WaitForShutdown()
			a.waitLog("bus: relay down")
			b.waitLog("bus: relay down")
			ca.send(t, 0, msgs, msgs) // sent while NATS is down
			startNATSAt(t, port, dir)
			cb.send(t, 1, msgs, msgs)
			waitAll(t, []*chatter{ca, cb}, 4*msgs, a, b)
			for _, s := range []*testServer{a, b} {
				s.waitLog("bus: relay resumed")
				if st := s.BusStats(); st.Lost != 0 || st.Missed != 0 || st.Dropped != 0 {
					t.Errorf("%s: bus stats %+v; want nothing lost", s.addr(), st)
				}
			}
			if storage == "memory" {
				a.waitLog("bus: the stream was created again")
			}
		})
	}
}

// Shutdown keeps to ShutdownTimeout in cluster mode, NATS gone and runs
// still to publish included.
func TestClusterShutdownTimeout(t *testing.T) {
	ns := startNATSAt(t, -1, t.TempDir())
	cfg := Config{Framing: Frame, NATS: ns.ClientURL(), Cluster: "stop", ShutdownTimeout: time.Second}
	a := startServer(t, cfg)
	a.waitLog("bus: relaying")
	ca := dialChatter(t, a.addr())
	a.waitActive(1)
	ns.Shutdown()
	ns.WaitForShutdown()
	a.waitLog("bus disconnected")
	ca.send(t, 0, 0, 100) // for the bus to publish, which it cannot
	waitAll(t, []*chatter{ca}, 100, a)
	start := time.Now()
	a.Shutdown(context.Background())
	took := time.Since(start)
	t.Logf("Shutdown took %v (ShutdownTimeout %v)", took, cfg.ShutdownTimeout)
	if took > cfg.ShutdownTimeout+time.Second {
		t.Errorf("Shutdown took %v; want about ShutdownTimeout (%v)", took, cfg.ShutdownTimeout)
	}
	if err := a.waitServe(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterReadyFollowsRelay: a server cut off from NATS turns unready
// (ErrRelayDown, what /readyz answers 503 with) while the relay is down,
// and ready again once it is back.
func TestClusterReadyFollowsRelay(t *testing.T) {
	nodes := startNATS(t, 1)
	px := startProxy(t, nodes[0].Addr().String())
	cfg := Config{Framing: Frame, NATS: "nats://" + px.addr()}
	s := startServer(t, cfg)
	s.waitLog("bus: relaying")
	s.waitStats("ready", func(Stats) bool { return s.Ready() == nil })
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		px.cut(3 * time.Second)
	}()
	s.waitStats("unready: relay down", func(Stats) bool { return errors.Is(s.Ready(), ErrRelayDown) })
	<-cut
	s.waitStats("ready again", func(Stats) bool { return s.Ready() == nil })
}
