package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// startChatConfig starts a chat server of configuration cfg on a free
// loopback port.
func startChatConfig(t *testing.T, cfg chat.Config) string {
	t.Helper()
	cfg.Addr, cfg.Backend = "127.0.0.1:0", "portable"
	srv, err := chat.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(); close(served) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return srv.Addr().String()
}

// TestProbeFraming: the probe tells each framing, whatever the server's
// largest message (a raw server's read size) and with others in the room.
func TestProbeFraming(t *testing.T) {
	for _, tt := range []struct {
		framing chat.Framing
		max     int
	}{
		{chat.Raw, 0}, {chat.Raw, 8}, {chat.Raw, 16 << 20},
		{chat.Line, 0}, {chat.Line, 42}, {chat.Line, 16 << 20},
		{chat.Frame, 0}, {chat.Frame, 41}, {chat.Frame, 16 << 20},
	} {
		addr := startChatConfig(t, chat.Config{Framing: tt.framing, MaxMessage: tt.max, SendQueue: 64 << 20})
		// Someone else in the room receives the probe's messages.
		other, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, other)
		got, err := probeFraming(context.Background(), dialTCP, addr)
		if err != nil || got != tt.framing {
			t.Errorf("%s server, --max-message %d: the probe found %v, %v; want %s", tt.framing, tt.max, got, err, tt.framing)
		}
		other.Close()
	}
}

// TestProbeNoServer: a probe that cannot connect says so, and so does
// cport load, after waiting for the server to listen.
func TestProbeNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if f, err := probeFraming(context.Background(), dialTCP, addr); err == nil {
		t.Errorf("the probe of a closed port found %s; want an error", f)
	}
	code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--quiet")
	if code != 1 || !strings.HasPrefix(errs, "cport load: ") || !strings.Contains(errs, "is the server running? (tried for ") || strings.Count(errs, "\n") != 1 {
		t.Errorf("cport load: exit status %d, stderr %q, stdout %q; want 1 and one line", code, errs, out)
	}
}

// TestLoadFindsFraming: cport load, load idle and load churn, without
// --framing, run against a server of each framing: its own, or lines for a
// raw one, which they say.
func TestLoadFindsFraming(t *testing.T) {
	for _, tt := range []struct {
		server, want chat.Framing
	}{{chat.Raw, chat.Line}, {chat.Line, chat.Line}, {chat.Frame, chat.Frame}} {
		t.Run(tt.server.String(), func(t *testing.T) {
			addr := startChat(t, tt.server)
			code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--clients", "4", "--senders", "2",
				"--duration", "200ms", "--warmup", "0", "--json")
			if code != 0 {
				t.Fatalf("cport load: exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
			}
			var rep load.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, out)
			}
			if rep.Framing != tt.want.String() || rep.Errors != (load.Errors{}) || rep.Delivered == 0 {
				t.Errorf("cport load ran %s framing, errors %+v, %d delivered; want %s, no errors", rep.Framing, rep.Errors, rep.Delivered, tt.want)
			}
			if said := strings.Contains(errs, "relays raw reads"); said != (tt.server == chat.Raw) {
				t.Errorf("stderr %q: says the server is raw: %v; want %v", errs, said, tt.server == chat.Raw)
			}
			code, out, errs = runLoadCmd(t, "load", "idle", "--addr", addr, "--clients", "3", "--duration", "10ms", "--quiet")
			if code != 0 || !strings.Contains(out, "0 dropped by the server") {
				t.Errorf("cport load idle: exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
			}
			code, out, errs = runLoadCmd(t, "load", "churn", "--addr", addr, "--total", "5", "--concurrent", "2", "--quiet")
			if code != 0 || !strings.Contains(out, tt.want.String()+" framing") {
				t.Errorf("cport load churn: exit status %d; want 0 and %s framing; stderr:\n%s\nstdout:\n%s", code, tt.want, errs, out)
			}
		})
	}
}

// TestLoadFramingMismatch: told the wrong framing, cport load fails and
// names the mismatch in one sentence.
func TestLoadFramingMismatch(t *testing.T) {
	for _, tt := range []struct {
		server, told chat.Framing
		want         string
	}{
		{chat.Frame, chat.Line, "cport load: the server's messages do not parse as line framing: start it with --framing line, or pass --framing frame\n"},
		// A line server holds the frames, waiting for a newline: no
		// client registers (the bound makes the test short, not the
		// outcome).
		{chat.Line, chat.Frame, "cport load: the server's messages do not parse as frame framing: start it with --framing frame, or pass --framing line\n"},
	} {
		addr := startChat(t, tt.server)
		code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--framing", tt.told.String(), "--clients", "4", "--senders", "2",
			"--duration", "200ms", "--warmup", "0", "--register-timeout", "1s", "--quiet")
		if code != 1 || !strings.Contains(errs, tt.want) {
			t.Errorf("%s server, --framing %s: exit status %d, stderr:\n%s\nstdout:\n%s\nwant status 1 and %q", tt.server, tt.told, code, errs, out, tt.want)
		}
		if strings.Contains(errs, "load: load:") {
			t.Errorf("stderr says load twice:\n%s", errs)
		}
	}
}

// TestLoadDefaultServe: cport load and cport load idle, as processes,
// against cport serve with its defaults (raw framing), given nothing but
// the address (the defaults' :25000 may be taken on a test machine) and a
// small run.
func TestLoadDefaultServe(t *testing.T) {
	_, addr := startServer(t)
	for _, args := range [][]string{
		{"load", "--addr", addr, "--clients", "5", "--senders", "2", "--duration", "300ms", "--warmup", "0"},
		{"load", "idle", "--addr", addr, "--clients", "5", "--duration", "10ms"},
	} {
		p := start(t, "cport "+strings.Join(args[:2], " "), args...)
		if code := p.wait(2 * longWait); code != 0 {
			t.Fatalf("cport %s: exit status %d; stderr:\n%s\nstdout:\n%s", strings.Join(args, " "), code, p.stderr.String(), p.stdout.String())
		}
		if !strings.Contains(p.stderr.String(), "relays raw reads") {
			t.Errorf("cport %s does not say the server is raw; stderr:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	}
}

// TestLoadWaitsForServer: cport load started before its server listens
// waits for it, says so, and runs; no connection is made to find out (the
// server counts exactly the load's clients).
func TestLoadWaitsForServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the server listens there
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		var out, errb syncBuffer
		code := run([]string{"load", "--addr", addr, "--clients", "5", "--senders", "1", "--duration", "200ms", "--warmup", "0"}, &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	// A moment after: the load tried and was refused at least once.
	time.Sleep(200 * time.Millisecond)
	srv, err := chat.New(chat.Config{Addr: addr, Backend: "portable", Framing: chat.Frame})
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(); close(served) }()
	defer func() { srv.Close(); <-served }()
	var r result
	select {
	case r = <-done:
	case <-time.After(longWait):
		t.Fatal("cport load still runs")
	}
	if r.code != 0 {
		t.Fatalf("cport load: status %d; stderr %s", r.code, r.errs)
	}
	if !strings.Contains(r.errs, "waiting for the server at "+addr) {
		t.Errorf("cport load did not say it waited: %q", r.errs)
	}
	if st := srv.Stats(); st.Accepted > 5+2 { // the clients and the probe's connections
		t.Errorf("the server accepted %d connections; want the 5 clients and the probe's", st.Accepted)
	}
}
