package load

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"cport.dev/cport/chat"
	natsserver "github.com/nats-io/nats-server/v2/server"
)

// startNATS starts an embedded NATS server with JetStream on a free
// loopback port and returns its client URL.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server is not ready")
	}
	return ns.ClientURL()
}

// startCluster starts n chat servers relaying through one NATS server,
// and returns their addresses. It does not wait for their buses to relay:
// the registration barrier does.
func startCluster(t *testing.T, n int) []string {
	t.Helper()
	url := startNATS(t)
	var addrs []string
	for range n {
		srv := serveChat(t, chat.Config{
			Addr:       "127.0.0.1:0",
			Backend:    "portable",
			Framing:    chat.Frame,
			NATS:       url,
			Cluster:    "load",
			NATSMaxAge: 30 * time.Second,
		})
		addrs = append(addrs, srv.Addr().String())
	}
	return addrs
}

// One run drives two servers of a cluster as one chat room: every message
// reaches every client of both, once, in order.
func TestRunCluster(t *testing.T) {
	addrs := startCluster(t, 2)
	pid := os.Getpid() // both servers are this process
	rep, err := Run(context.Background(), Config{
		Addrs:      addrs,
		Clients:    30,
		Senders:    4,
		Duration:   time.Second,
		Warmup:     200 * time.Millisecond,
		ServerPIDs: []int{pid, pid},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, delivered %d, %d probes, p50 %v, p99 %v", rep.Sent, rep.Delivered, rep.Setup.Probes, rep.Latency.P50, rep.Latency.P99)
	checkDelivered(t, rep)
	if len(rep.Addrs) != 2 {
		t.Errorf("report addresses %v, want the 2 servers", rep.Addrs)
	}
	if rep.Server == nil || rep.Server.Err != "" || len(rep.PerServer) != 2 {
		t.Fatalf("server usage %+v, per server %+v", rep.Server, rep.PerServer)
	}
	if sum := rep.PerServer[0].RSS + rep.PerServer[1].RSS; rep.Server.RSS != sum || sum <= 0 {
		t.Errorf("summed RSS %d, want %d", rep.Server.RSS, sum)
	}
}

// Senders are spread round-robin over the servers like the clients, and
// over each server's clients.
func TestSenderClient(t *testing.T) {
	for _, tc := range []struct{ senders, clients, servers int }{
		{10, 100, 1}, {4, 30, 2}, {3, 3, 3}, {5, 7, 2}, {7, 1000, 3},
	} {
		seen := make(map[int]bool)
		perServer := make([]int, tc.servers)
		for j := range tc.senders {
			c := senderClient(j, tc.senders, tc.clients, tc.servers)
			if c < 0 || c >= tc.clients || seen[c] || c%tc.servers != j%tc.servers {
				t.Fatalf("%+v: sender %d is client %d", tc, j, c)
			}
			seen[c] = true
			perServer[c%tc.servers]++
		}
		for s, n := range perServer {
			if n == 0 {
				t.Errorf("%+v: server %d has no sender", tc, s)
			}
		}
	}
	if c := senderClient(3, 10, 100, 1); c != 30 {
		t.Errorf("one server: sender 3 of 10 is client %d, want 30 (spread as before)", c)
	}
}

// A bad address list is refused before any connection, and says why.
func TestRunBadAddrs(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Addrs: []string{"127.0.0.1:1", ""}}, `address 2 of 2, "": want host:port`},
		{Config{Addrs: []string{"127.0.0.1"}}, `address 1 of 1, "127.0.0.1": want host:port`},
		{Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:1"}}, "listed twice"},
		{Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Senders: 1}, "at least one sender per server"},
		{Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, Clients: 2, Senders: 2}, "at least one client per server"},
		{Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, ServerPIDs: []int{os.Getpid()}}, "one pid per address"},
	} {
		_, err := Run(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%v): %v; want an error saying %q", tc.cfg.Addrs, err, tc.want)
		}
	}
}
