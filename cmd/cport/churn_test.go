package main

import (
	"encoding/json"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// cport load churn against a server of this process: every connection
// gets its echo, the server comes back to its baseline, exit status 0.
func TestLoadChurn(t *testing.T) {
	addr := startChat(t, chat.Frame)
	pid := strconv.Itoa(os.Getpid())
	code, out, errs := runLoadCmd(t, "load", "churn", "--addr", addr, "--total", "200", "--concurrent", "10",
		"--server-pid", pid, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.ChurnReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if rep.Done != 200 || rep.Failures != 0 || rep.Server == nil || !rep.Server.Back() {
		t.Errorf("report %+v, server %+v; want 200 done, the server back to its baseline", rep, rep.Server)
	}

	code, out, errs = runLoadCmd(t, "load", "churn", "--addr", addr, "--total", "100", "--connect-only", "--server-pid", pid, "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	for _, want := range []string{"connect and close", "100 connections, 500 at once", "descriptors", "RSS", "result       OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// A server that keeps the connections it accepted: exit status 1, and the
// descriptors named.
func TestLoadChurnNotBack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("descriptors are counted on Linux")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 200)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	// The connections are held once this process has accepted them: a
	// run that ends before the acceptor has taken any from the kernel's
	// queue sees the descriptors back (there were none yet). Each run
	// holds 20 more, so a second or third one finds them.
	var code int
	var out, errs string
	for range 5 {
		code, out, errs = runLoadCmd(t, "load", "churn", "--addr", ln.Addr().String(), "--total", "20", "--connect-only",
			"--server-pid", strconv.Itoa(os.Getpid()), "--settle-timeout", "200ms", "--quiet")
		if code != 0 {
			break
		}
	}
	if code != 1 || !strings.Contains(errs, "descriptors") || !strings.Contains(out, "FAILED") {
		t.Errorf("exit status %d; want 1, the descriptors named; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
}

func TestLoadChurnUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--total", "0"}, "cport load churn: --total: must be 1 or more, got 0"},
		{[]string{"--framing", "raw"}, "cport load churn: --framing: must be auto, frame or line, got raw"},
		{[]string{"--addr", "nowhere"}, "host:port"},
		{[]string{"--server-pid", "-3"}, "cport load churn: --server-pid: must be 0 or more, got -3"},
	} {
		code, _, errs := runCmd(append([]string{"load", "churn"}, tt.args...)...)
		if code != 2 || !strings.Contains(errs, tt.want) {
			t.Errorf("cport load churn %s: status %d, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, errs, tt.want)
		}
	}
	code, out, errs := runCmd("load", "churn", "-h")
	if help := out + errs; code != 0 || !strings.Contains(help, "Load churn opens and closes") || !strings.Contains(help, "-connect-only") {
		t.Errorf("cport load churn -h: status %d, output %q; want 0 and the churn's usage", code, help)
	}
}
