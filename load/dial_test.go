package load

import (
	"context"
	"net"
	"testing"

	"cport.dev/cport/chat"
)

func TestSources(t *testing.T) {
	s := newSources([]string{"127.0.0.1:25000"}, 10)
	if !s.enabled || s.bind {
		t.Fatalf("10 clients to 127.0.0.1: enabled %v, bind %v; want true, false", s.enabled, s.bind)
	}
	if a, _ := s.pick(); a != nil {
		t.Errorf("picked %v, want none (the kernel's choice)", a)
	}
	// Other processes took the ports of 127.0.0.1: move on to 127.0.0.2.
	if !s.exhausted(0) {
		t.Fatal("exhausted(0) found no other address")
	}
	s.perAddr = 2
	var got []string
	for range 5 {
		a, _ := s.pick()
		got = append(got, a.IP.String())
	}
	want := []string{"127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.4"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("picked %v, want %v", got, want)
		}
	}
	if n := s.count(); n != 4 {
		t.Errorf("count %d, want 4", n)
	}

	if s := newSources([]string{"127.0.0.1:25000", "[::1]:25000"}, 1e6); s.enabled || s.bind {
		t.Error("sources spread over with an IPv6 server")
	}
	if s := newSources([]string{"127.0.0.1:25000", "localhost:25001"}, 1e6); !s.bind {
		t.Error("a million clients on one source address")
	}
}

// Connections bound to other loopback sources reach the server.
func TestConnectSpreads(t *testing.T) {
	srv := startServer(t, chat.Frame)
	cfg := Config{Addrs: []string{srv.Addr().String()}, Clients: 7, Senders: 1, ConnectRate: -1}.withDefaults()
	r, err := newRun(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	r.src.bind, r.src.perAddr = true, 3
	if err := r.connect(context.Background(), r.startReader); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range r.clients {
		seen[c.conn.LocalAddr().(*net.TCPAddr).IP.String()]++
	}
	if len(seen) != 3 || seen["127.0.0.1"] != 3 || seen["127.0.0.2"] != 3 || seen["127.0.0.3"] != 1 {
		t.Errorf("sources used: %v; want 3 on 127.0.0.1 and .2, 1 on .3", seen)
	}
	if _, err := r.register(context.Background()); err != nil {
		t.Fatal(err)
	}
}
