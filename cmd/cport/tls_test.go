package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cport.dev/cport/internal/testcert"
	"cport.dev/cport/load"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in a temporary directory, and returns their paths.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := testcert.WritePEM(tempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestServeTLS runs cport serve with a certificate and two cport clients
// speaking TLS to it (one verifying the certificate against it, one
// skipping the check), then openssl s_client if the machine has it: what
// one sends, all print. A plain client fails its handshake alone.
func TestServeTLS(t *testing.T) {
	cert, key := writeTestCert(t)
	srv, addr := startServer(t, "--framing", "line", "--tls-cert", cert, "--tls-key", key)
	if !strings.Contains(srv.stderr.String(), "tls=true") {
		t.Errorf("the server does not say it serves TLS: %s", srv.stderr.String())
	}
	a := start(t, "a", "client", "--addr", addr, "--framing", "line", "--tls-ca", cert, "--quiet", "--linger", "100ms")
	b := start(t, "b", "client", "--addr", addr, "--framing", "line", "--tls-insecure", "--quiet", "--linger", "100ms")
	// b's handshake ends on the server a moment after b's own: a says
	// hello until b hears it.
	for i := 0; !b.stdout.waitFor("hello over TLS\n", 100*time.Millisecond); i++ {
		if i == int(longWait/(100*time.Millisecond)) {
			t.Fatalf("b has not printed a's hello after %v; stdout:\n%s", longWait, b.stdout.String())
		}
		a.send("hello over TLS\n")
	}
	a.waitOut("hello over TLS\n")

	plain, err := net.DialTimeout("tcp", addr, longWait)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte("in the clear\n"))
	plain.SetReadDeadline(time.Now().Add(longWait))
	if got, err := io.ReadAll(plain); bytes.Contains(got, []byte("hello")) || bytes.Contains(got, []byte("clear")) {
		t.Errorf("a plain client received %q (%v)", got, err)
	}
	if !srv.stderr.waitFor("TLS handshake failed", longWait) {
		t.Errorf("the server did not log the plain client's failed handshake:\n%s", srv.stderr.String())
	}

	if path, err := exec.LookPath("openssl"); err != nil {
		t.Logf("no openssl here: s_client not tried (%v)", err)
	} else {
		o := &proc{t: t, name: "openssl", done: make(chan struct{})}
		o.cmd = exec.Command(path, "s_client", "-connect", addr, "-CAfile", cert, "-verify_return_error", "-quiet")
		o.cmd.Stdout, o.cmd.Stderr = &o.stdout, &o.stderr
		if o.stdin, err = o.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := o.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { o.err = o.cmd.Wait(); close(o.done) }()
		defer func() { o.cmd.Process.Kill(); <-o.done }()
		o.send("from openssl\n")
		a.waitOut("from openssl\n")
		b.waitOut("from openssl\n")
		b.send("to openssl\n")
		o.waitOut("to openssl\n")
	}

	a.stdin.Close()
	if code := a.wait(longWait); code != 0 {
		t.Errorf("client a exited with %d; stderr %s", code, a.stderr.String())
	}
}

// TestClientTLSUnverified checks that cport client --tls refuses a server
// whose certificate it cannot verify, saying why.
func TestClientTLSUnverified(t *testing.T) {
	cert, key := writeTestCert(t)
	_, addr := startServer(t, "--framing", "line", "--tls-cert", cert, "--tls-key", key)
	c := start(t, "client", "client", "--addr", addr, "--tls", "--quiet")
	if code := c.wait(longWait); code != 1 || !strings.Contains(c.stderr.String(), "certificate") {
		t.Errorf("exit status %d, stderr %q; want 1 and the certificate named", code, c.stderr.String())
	}
}

// TestServeTLSFlags checks that serve's TLS flags come in pairs and name
// what is wrong with the files.
func TestServeTLSFlags(t *testing.T) {
	cert, key := writeTestCert(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "--tls-cert: needs --tls-key"},
		{[]string{"--tls-key", key}, "--tls-key: needs --tls-cert"},
		{[]string{"--tls-cert", key, "--tls-key", cert}, "--tls-cert and --tls-key: "},
		{[]string{"--tls-cert", cert, "--tls-key", filepath.Join(tempDir(t), "none.pem")}, "none.pem: "}, // the system's words follow
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-handshake-timeout", "0"}, "--tls-handshake-timeout: must be"},
	} {
		code, _, errs := runCmd(append([]string{"serve", "--addr", "127.0.0.1:0"}, tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("serve %q: exit status %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
	code, _, errs := runCmd("client", "--tls-ca", cert+".missing")
	if code != 2 || !strings.Contains(errs, "--tls-ca: ") {
		t.Errorf("client --tls-ca missing: exit status %d, stderr %q; want 2 naming --tls-ca", code, errs)
	}
}

// TestLoadTLS drives a TLS server with cport load --tls-ca: the framing is
// found out by a probe over TLS, and every message arrives.
func TestLoadTLS(t *testing.T) {
	cert, key := writeTestCert(t)
	_, addr := startServer(t, "--framing", "frame", "--tls-cert", cert, "--tls-key", key)
	code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--tls-ca", cert,
		"--clients", "10", "--senders", "2", "--duration", "1s", "--warmup", "100ms", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if rep.Errors != (load.Errors{}) || rep.Sent == 0 || rep.Delivered != rep.Sent*10 {
		t.Errorf("errors %+v, sent %d, delivered %d; want none, a positive number sent, delivered 10 times", rep.Errors, rep.Sent, rep.Delivered)
	}
}
