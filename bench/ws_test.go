package main

import (
	"slices"
	"testing"
)

// The WebSocket scenario runs on the run's first cport server, its
// gateway and wspeer, driven with --ws where the address is a WebSocket
// one.
func TestWSServers(t *testing.T) {
	r := &runner{servers: sixServers()}
	var names []string
	for _, s := range r.wsServers() {
		names = append(names, s.name)
		args := loadArgs{addr: "127.0.0.1:1", ws: s.ws, clients: 10, senders: 1, size: 64}.args()
		if s.ws != slices.Contains(args, "--ws") || s.ws == slices.Contains(args, "--framing") {
			t.Errorf("%s: cport %v", s.name, args)
		}
	}
	if want := []string{"cport/uring", "cport/uring ws", "wspeer"}; !slices.Equal(names, want) {
		t.Errorf("servers %q, want %q", names, want)
	}
	ws := r.wsServers()[1].relay("127.0.0.1:7")
	if i := slices.Index(ws, "--ws-addr"); i < 0 || ws[i+1] != "127.0.0.1:7" || !slices.Contains(ws, "uring") {
		t.Errorf("the gateway's command line: %q", ws)
	}

	r.servers = r.servers[3:] // net, gnet, nbio
	names = names[:0]
	for _, s := range r.wsServers() {
		names = append(names, s.name)
	}
	if want := []string{"cport/auto ws", "wspeer"}; !slices.Equal(names, want) {
		t.Errorf("without cport servers: %q, want %q", names, want)
	}
}
