package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// TestLoadWSUsage: --ws refuses --framing, which does not apply to
// WebSocket clients, with status 2.
func TestLoadWSUsage(t *testing.T) {
	const nowhere = "127.0.0.1:1"
	checkUsage(t, []string{"load", "--addr", nowhere, "--ws"}, []usageCase{
		{[]string{"--framing", "line"}, "cport load: --framing: does not apply with --ws: every WebSocket message is one chat message, whatever the server's framing"},
		{[]string{"--framing", "auto"}, "cport load: --framing: does not apply with --ws: every WebSocket message is one chat message, whatever the server's framing"},
	})
	checkUsage(t, []string{"load", "idle", "--addr", nowhere, "--ws"}, []usageCase{
		{[]string{"--framing", "frame"}, "cport load idle: --framing: does not apply with --ws: every WebSocket message is one chat message, whatever the server's framing"},
	})
}

// answerHTTP serves, on the address it returns, every connection with
// resp once the request's header is read, then closes it.
func answerHTTP(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(conn, resp)
			})
		}
	})
	return ln.Addr().String()
}

// TestLoadWSHandshake: a server that does not upgrade fails cport load
// --ws with status 1 and a sentence that says what it answered.
func TestLoadWSHandshake(t *testing.T) {
	cases := []struct{ resp, want string }{
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", `WebSocket handshake (GET /ws): the server answered "HTTP/1.1 404 Not Found", not 101 Switching Protocols`},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n", `the response's Sec-WebSocket-Accept is "AAAA", want`},
		{"HTTP/1.1 101 Switching", "the server closed the connection in the middle of its response, after 22 bytes"},
	}
	for _, c := range cases {
		addr := answerHTTP(t, c.resp)
		code, out, errs := runLoadCmd(t, "load", "--ws", "--addr", addr, "--clients", "2", "--senders", "1", "--duration", "1s", "--quiet")
		where := " of 2 to " + addr + ": " // client 1 or 2, whichever failed first
		if code != 1 || out != "" || !strings.HasPrefix(errs, "cport load: connecting client ") || !strings.Contains(errs, where) ||
			!strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("status %d, stdout %q, stderr %q; want status 1 and one line: cport load: connecting client …%s…%s", code, out, errs, where, c.want)
		}
	}
}

// TestLoadWSTCPAddress: --ws against a chat server's TCP address says so.
func TestLoadWSTCPAddress(t *testing.T) {
	addr := startChat(t, chat.Line)
	code, _, errs := runLoadCmd(t, "load", "--ws", "--addr", addr, "--clients", "2", "--senders", "1", "--quiet")
	if code != 1 || !strings.Contains(errs, "the answer is not HTTP") || !strings.Contains(errs, "--ws-addr") {
		t.Errorf("status %d, stderr %q; want 1 and a sentence that the answer is not HTTP", code, errs)
	}
}

// startChatWS starts a chat server with a WebSocket gateway on free
// loopback ports and returns the gateway's address.
func startChatWS(t *testing.T, f chat.Framing) string {
	t.Helper()
	srv, err := chat.New(chat.Config{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", Backend: "portable", Framing: f})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(); close(served) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return srv.WSAddr().String()
}

// TestLoadWS drives the chat server's WebSocket gateway with cport load
// --ws: 50 WebSocket clients, 4 senders, every message to every client.
func TestLoadWS(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			addr := startChatWS(t, f)
			code, out, errs := runLoadCmd(t, "load", "--ws", "--addr", addr,
				"--clients", "50", "--senders", "4", "--duration", "1s", "--warmup", "100ms", "--json", "--quiet")
			if code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
			}
			var rep load.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, out)
			}
			if rep.Framing != "websocket" || rep.Errors != (load.Errors{}) || rep.Sent == 0 || rep.Delivered != rep.Sent*50 {
				t.Errorf("framing %q, errors %+v, sent %d, delivered %d; want websocket, none, a positive number sent, delivered 50 times",
					rep.Framing, rep.Errors, rep.Sent, rep.Delivered)
			}
		})
	}
	// The text report names the clients.
	addr := startChatWS(t, chat.Frame)
	code, out, errs := runLoadCmd(t, "load", "--ws", "--addr", addr, "--clients", "5", "--senders", "1", "--duration", "200ms", "--quiet")
	if code != 0 || !strings.Contains(out, "target       "+addr+", WebSocket clients, 64-byte messages") {
		t.Errorf("exit status %d, report:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// TestLoadWSS: cport load --ws --tls-ca drives the gateway of a TLS chat
// server (wss): every message arrives; a client that does not verify the
// certificate's CA fails its handshake, with status 1.
func TestLoadWSS(t *testing.T) {
	certFile, keyFile := writeTestCert(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := chat.New(chat.Config{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", Backend: "portable",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(); close(served) }()
	t.Cleanup(func() { srv.Close(); <-served })
	addr := srv.WSAddr().String()
	code, out, errs := runLoadCmd(t, "load", "--ws", "--addr", addr, "--tls-ca", certFile,
		"--clients", "20", "--senders", "2", "--duration", "500ms", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if rep.Framing != "websocket" || rep.Errors != (load.Errors{}) || rep.Sent == 0 || rep.Delivered != rep.Sent*20 {
		t.Errorf("framing %q, errors %+v, sent %d, delivered %d", rep.Framing, rep.Errors, rep.Sent, rep.Delivered)
	}
	code, _, errs = runLoadCmd(t, "load", "--ws", "--addr", addr, "--tls", "--clients", "2", "--senders", "1", "--quiet")
	if code != 1 || !strings.Contains(errs, "TLS handshake") {
		t.Errorf("with the system's CAs: status %d, stderr %q; want 1 and a failed TLS handshake", code, errs)
	}
}
