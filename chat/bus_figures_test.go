package chat

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestClusterFigures measures cluster mode; it runs only with
// CPORT_FIGURES=1 (go test ./chat -run TestClusterFigures -v -timeout 5m):
//
//   - 1,000 clients, 10 senders of 64-byte frames, on one server, then
//     spread 500+500 over two servers relaying through an embedded NATS
//     server (JetStream, one node): deliveries per second and p50/p99
//     latency (send to receipt, sampled on every tenth client);
//   - two servers of 100 clients each, 10 senders at 200 messages/s each,
//     NATS cut off for two seconds: the messages relayed late, and the time
//     from NATS coming back until every client has them all.
//
// Senders run a closed loop of figWindow messages in flight, paced on a
// client of the other server (of the same server when there is one): the
// bus path must keep up for the senders to go on.
func TestClusterFigures(t *testing.T) {
	if os.Getenv("CPORT_FIGURES") == "" {
		t.Skip("set CPORT_FIGURES=1 to measure")
	}
	nodes := startNATS(t, 1)
	urls := natsURLs(nodes)
	t.Run("one server", func(t *testing.T) {
		a := startServer(t, Config{Framing: Frame})
		figThroughput(t, []*testServer{a}, 1000, 10)
	})
	t.Run("two servers", func(t *testing.T) {
		a := startMember(t, "", urls, 1)
		b := startMember(t, "", urls, 1)
		figThroughput(t, []*testServer{a, b}, 1000, 10)
	})
	t.Run("outage", func(t *testing.T) {
		px := startProxy(t, nodes[0].Addr().String())
		a := startServer(t, Config{Framing: Frame, NATS: "nats://" + px.addr(), Cluster: "outage"})
		a.waitLog("bus: relaying")
		b := startServer(t, Config{Framing: Frame, NATS: "nats://" + px.addr(), Cluster: "outage"})
		b.waitLog("bus: relaying")
		figOutage(t, px, []*testServer{a, b})
	})
}

const figWindow = 32

type figClient struct {
	conn   net.Conn
	n      atomic.Int64
	last   []atomic.Int64 // per sender: last seq received + 1
	sample bool
	mu     sync.Mutex
	lat    []time.Duration
	done   chan struct{}
}

func figDial(t *testing.T, addr string, senders int, sample bool) *figClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &figClient{conn: conn, last: make([]atomic.Int64, senders), sample: sample, done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *figClient) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.conn, 64<<10)
	buf := make([]byte, 4+chatMsgSize)
	for {
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		p := buf[4:]
		sender, _ := strconv.Atoi(string(p[0:4]))
		seq, _ := strconv.Atoi(string(p[5:13]))
		if c.sample {
			ns, _ := strconv.ParseInt(string(p[14:33]), 10, 64)
			d := time.Duration(time.Now().UnixNano() - ns)
			c.mu.Lock()
			c.lat = append(c.lat, d)
			c.mu.Unlock()
		}
		if sender < len(c.last) {
			c.last[sender].Store(int64(seq) + 1)
		}
		c.n.Add(1)
	}
}

func figMsg(b []byte, sender, seq int) []byte {
	b = binary.BigEndian.AppendUint32(b, chatMsgSize)
	start := len(b)
	b = fmt.Appendf(b, "%04d:%08d:%019d:", sender, seq, time.Now().UnixNano())
	for len(b)-start < chatMsgSize {
		b = append(b, 'x')
	}
	return b
}

// figClients connects n clients spread over servers; the first senders
// of each server's share send.
func figClients(t *testing.T, servers []*testServer, n, senders int) []*figClient {
	var cs []*figClient
	for i := range n {
		ts := servers[i%len(servers)]
		cs = append(cs, figDial(t, ts.addr(), senders, i%10 == 0))
	}
	for si, ts := range servers {
		k := n / len(servers)
		if si < n%len(servers) {
			k++
		}
		ts.waitActive(k)
	}
	return cs
}

// figSend runs senders (clients 0..senders-1) until stop; sender i is paced
// on client i+1 (the next server's when there are several), at rate
// messages/s each if rate > 0, else as fast as the window allows.
func figSend(cs []*figClient, senders int, rate float64, stop <-chan struct{}, sent []atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range senders {
		c, pacer := cs[i], cs[i+1]
		wg.Go(func() {
			var b []byte
			tick := time.Duration(0)
			if rate > 0 {
				tick = time.Duration(float64(time.Second) / rate)
			}
			next := time.Now()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				if rate > 0 {
					next = next.Add(tick)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				} else {
					for int64(seq)-pacer.last[i].Load() >= figWindow {
						select {
						case <-stop:
							return
						default:
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
				b = figMsg(b[:0], i, seq)
				if _, err := c.conn.Write(b); err != nil {
					return
				}
				sent[i].Store(int64(seq) + 1)
			}
		})
	}
	return &wg
}

func figThroughput(t *testing.T, servers []*testServer, n, senders int) {
	cs := figClients(t, servers, n, senders)
	stop := make(chan struct{})
	sent := make([]atomic.Int64, senders)
	wg := figSend(cs, senders, 0, stop, sent)
	time.Sleep(time.Second) // warm-up
	total := func() (s int64) {
		for _, c := range cs {
			s += c.n.Load()
		}
		return s
	}
	for _, c := range cs {
		c.mu.Lock()
		c.lat = c.lat[:0]
		c.mu.Unlock()
	}
	d0, t0 := total(), time.Now()
	time.Sleep(5 * time.Second)
	d1, el := total(), time.Since(t0)
	var lat []time.Duration
	for _, c := range cs {
		c.mu.Lock()
		lat = append(lat, c.lat...)
		c.mu.Unlock()
	}
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))]
	}
	t.Logf("FIGURE %d servers, %d clients, %d senders, 64-byte frames: %.0f deliveries/s, latency p50 %v p99 %v (%d samples)",
		len(servers), n, senders, float64(d1-d0)/el.Seconds(), pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), len(lat))
	for _, s := range servers {
		t.Logf("%s: %+v %+v", s.addr(), s.Stats(), s.BusStats())
	}
}

func figOutage(t *testing.T, px *proxy, servers []*testServer) {
	const n, senders = 200, 10
	cs := figClients(t, servers, n, senders)
	stop := make(chan struct{})
	sent := make([]atomic.Int64, senders)
	wg := figSend(cs, senders, 200, stop, sent)
	time.Sleep(time.Second)
	before := make([]int64, senders)
	for i := range senders {
		before[i] = sent[i].Load()
	}
	px.cut(2 * time.Second) // returns when NATS is reachable again
	back := time.Now()
	var during int64
	for i := range senders {
		during += sent[i].Load() - before[i]
	}
	close(stop)
	wg.Wait()
	want := make([]int64, senders)
	var total int64
	for i := range senders {
		want[i] = sent[i].Load()
		total += want[i]
	}
	deadline := time.Now().Add(longWait)
	for _, c := range cs {
		for i := range senders {
			for c.last[i].Load() < want[i] {
				if time.Now().After(deadline) {
					t.Fatalf("not recovered after %v", longWait)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	rec := time.Since(back)
	for _, c := range cs {
		if got := c.n.Load(); got != total {
			t.Errorf("a client got %d messages, want %d", got, total)
		}
	}
	t.Logf("FIGURE 2 s NATS outage, 2 servers, %d clients, %d senders at 200 msg/s: %d messages sent during the outage, all clients complete %v after NATS came back (%d messages in all, none lost)",
		n, senders, during, rec.Round(time.Millisecond), total)
	for _, s := range servers {
		t.Logf("%s: %+v %+v", s.addr(), s.Stats(), s.BusStats())
	}
}
