package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/chat"
)

// longWait bounds every wait: generous, for loaded machines.
const longWait = 30 * time.Second

// cportBin is the command, built once by TestMain; empty if it could not
// be built because there is no go command, and then noBin says why.
var cportBin, noBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	// go test puts the bin directory of its own GOROOT first in the test's
	// PATH, so this finds the go command that is running the test.
	goCmd, err := exec.LookPath("go")
	if err != nil {
		noBin = "no go command to build cport with: " + err.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "cport-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "cport")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if out, err := exec.Command(goCmd, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build -o %s .: %v\n%s", bin, err, out)
		return 1
	}
	cportBin = bin
	return m.Run()
}

// backends returns the cport backends of this build that can run here,
// restricted to the comma-separated list in $CPORT_BACKENDS if it is set
// (as for the chat package's tests). The end-to-end test runs the server
// on each; the other tests use the first.
func backends(t *testing.T) []string {
	t.Helper()
	names := cport.Backends()
	if env := strings.TrimSpace(os.Getenv("CPORT_BACKENDS")); env != "" {
		var keep []string
		for _, n := range strings.Split(env, ",") {
			if n = strings.TrimSpace(n); slices.Contains(names, n) {
				keep = append(keep, n)
			}
		}
		names = keep
	}
	var usable []string
	for _, n := range names {
		if p, err := cport.Open(cport.Config{Backend: n}); err == nil {
			p.Close()
			usable = append(usable, n)
		}
	}
	if len(usable) == 0 {
		t.Skip("no cport backend can run here")
	}
	return usable
}

// needBin skips a test that runs the command if it could not be built.
func needBin(t *testing.T) {
	t.Helper()
	if cportBin == "" {
		t.Skip(noBin)
	}
}

// needSignals skips a test that sends SIGTERM where there is none.
func needSignals(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no SIGTERM on " + runtime.GOOS)
	}
}

// The command line, in process ------------------------------------------

// runCmd runs the command's run function with args.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// serveFlags are the flags of cport serve and the defaults help shows.
var serveFlags = []struct{ name, def string }{
	{"addr", `(default ":25000")`},
	{"backend", "(default auto)"},
	{"workers", "from 0 to 4096 (0: GOMAXPROCS)"},
	{"framing", "(default raw)"},
	{"max-message", "from 1B to 16MiB"},
	{"max-message", "(default 64KiB)"},
	{"no-echo", ""},
	{"send-queue", "from 1KiB to 1GiB"},
	{"send-queue", "(default 4MiB)"},
	{"sender-limit", "(0: --send-queue/8; none: no limit)"},
	{"sender-messages", "(0: 64; none: no limit)"},
	{"write-timeout", "(0: never) (default 10s)"},
	{"max-conns", "(0: no cap)"},
	{"max-conns-per-ip", "(0: no cap)"},
	{"accept-rate", "(0: no cap)"},
	{"accept-burst", "(0: the rate, at least 1)"},
	{"idle-timeout", "(0: never)"},
	{"message-timeout", "(0: never) (default 30s)"},
	{"shutdown-timeout", "(default 5s)"},
	{"half-close-timeout", "(default 2s)"},
	{"half-close-max", "(default 1024)"},
	{"nats-max-age", "(default 1m0s)"},
	{"nats-max-bytes", "(default 256MiB)"},
	{"nats-replicas", "from 1 to 5 (default 1)"},
	{"nats-storage", "had not read) (default file)"},
	{"log-format", "(default text)"},
	{"log-level", "(default info)"},
	{"metrics-addr", "(none: off)"},
	{"pprof", "on --metrics-addr"},
	{"stats-interval", "(0: never) (default 1m0s)"},
	{"config", "deploy/cport.toml"},
	{"print-config", "CPORT_MAX_MESSAGE"},
}

var clientFlags = []struct{ name, def string }{
	{"addr", `(default "127.0.0.1:25000")`},
	{"framing", "(default raw)"},
	{"linger", "(default 1s)"},
	{"quiet", ""},
}

// checkFlags checks that usage lists every flag, each with its default.
func checkFlags(t *testing.T, usage string, flags []struct{ name, def string }) {
	t.Helper()
	for _, f := range flags {
		re := regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(f.name) + `\b.*\n((?:    \t.*\n)*)`)
		m := re.FindStringSubmatch(usage)
		if m == nil {
			t.Errorf("usage does not list --%s:\n%s", f.name, usage)
			continue
		}
		if !strings.Contains(m[1], f.def) {
			t.Errorf("usage of --%s is %q; want it to give its default %s", f.name, strings.TrimSpace(m[0]), f.def)
		}
	}
}

func TestHelp(t *testing.T) {
	code, out, errOut := runCmd("help")
	if code != 0 || !strings.Contains(out, "serve") || !strings.Contains(out, "client") || errOut != "" {
		t.Errorf("cport help: status %d, stdout %q, stderr %q; want 0 and the commands on stdout", code, out, errOut)
	}
	for _, args := range [][]string{{"help", "serve"}, {"serve", "-h"}, {"serve", "--help"}} {
		code, out, errOut := runCmd(args...)
		if code != 0 {
			t.Errorf("cport %s: status %d; want 0", strings.Join(args, " "), code)
		}
		checkFlags(t, out+errOut, serveFlags)
	}
	code, out, _ = runCmd("help", "client")
	if code != 0 {
		t.Errorf("cport help client: status %d; want 0", code)
	}
	checkFlags(t, out, clientFlags)
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, 2, "Usage"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, 2, `unknown command "bogus"`},
		{[]string{"serve", "--framing", "bogus"}, 2, "cport serve: --framing: must be raw, line or frame, got bogus"},
		{[]string{"serve", "--no-such-flag"}, 2, "cport serve: --no-such-flag: no such flag (cport serve -h lists them)"},
		{[]string{"serve", "extra"}, 2, `cport serve: unexpected arguments: ["extra"]`},
		{[]string{"client", "--framing", "bogus"}, 2, "cport client: --framing: must be raw, line or frame, got bogus"},
		{[]string{"client", "--linger", "-1s"}, 2, "cport client: --linger: must be 0 or more, got -1s"},
		{[]string{"client", "--addr"}, 2, "cport client: --addr: needs a value"},
	} {
		code, _, errOut := runCmd(tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("cport %s: status %d, stderr %q; want status %d and %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.want)
		}
	}
}

// The command, run --------------------------------------------------------

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor waits until the buffer holds s, and reports whether it did.
func (b *syncBuffer) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// A proc is a cport process started by a test.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{}
	err    error // of Wait
}

// start runs cport with args; it is killed when the test ends if it is
// still running.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	needBin(t)
	p := &proc{t: t, name: name, done: make(chan struct{})}
	p.cmd = exec.Command(cportBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", p.name, p.stdout.String(), p.name, p.stderr.String())
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its status; it fails the
// test if it does not exit within d.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s still running after %v", p.name, d)
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	}
	p.t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// send writes s to the process's standard input.
func (p *proc) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, s); err != nil {
		p.t.Fatalf("%s: writing to standard input: %v", p.name, err)
	}
}

// waitOut waits until the process has printed s on standard output.
func (p *proc) waitOut(s string) {
	p.t.Helper()
	if !p.stdout.waitFor(s, longWait) {
		p.t.Fatalf("%s has not printed %q after %v; stdout:\n%s", p.name, s, longWait, p.stdout.String())
	}
}

var listenRE = regexp.MustCompile(`msg="chat server listening" addr=(\S+)`)

// startServer runs cport serve on a free loopback port, with extra flags,
// and returns it and its address, parsed from its log.
func startServer(t *testing.T, flags ...string) (*proc, string) {
	t.Helper()
	p := start(t, "server", append([]string{"serve", "--addr", "127.0.0.1:0", "--backend", backends(t)[0]}, flags...)...)
	deadline := time.Now().Add(longWait)
	for {
		if m := listenRE.FindStringSubmatch(p.stderr.String()); m != nil {
			return p, m[1]
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the server has not logged its address (exited: %v); stderr:\n%s", p.exited(), p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServeAndClients runs the server and two clients, as processes: what
// one client sends, both print. SIGTERM stops the server, which exits 0;
// the client still connected then exits with an error.
func TestServeAndClients(t *testing.T) {
	needSignals(t)
	for _, framing := range []string{"raw", "line", "frame"} {
		for _, backend := range backends(t) {
			t.Run(backend+"/"+framing, func(t *testing.T) {
				testServeAndClients(t, backend, framing)
			})
		}
	}
}

func testServeAndClients(t *testing.T, backend, framing string) {
	srv, addr := startServer(t, "--framing", framing, "--backend", backend)
	if !strings.Contains(srv.stderr.String(), "backend="+backend+" ") {
		t.Errorf("the server does not say it runs on %s: %s", backend, srv.stderr.String())
	}
	client := func(name string) *proc {
		return start(t, name, "client", "--addr", addr, "--framing", framing, "--quiet", "--linger", "500ms")
	}
	alice, bob := client("alice"), client("bob")

	// A client only gets what is sent once it is registered: alice
	// pings until bob sees a ping, which makes both registered.
	deadline := time.Now().Add(longWait)
	for i := 0; !strings.Contains(bob.stdout.String(), "ping from alice"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("bob got no ping from alice after %v", longWait)
		}
		alice.send(fmt.Sprintf("ping from alice %d\n", i))
		time.Sleep(20 * time.Millisecond)
	}
	alice.send("hello from alice\n")
	bob.send("hello from bob\n")
	for _, p := range []*proc{alice, bob} {
		p.waitOut("hello from alice\n")
		p.waitOut("hello from bob\n")
	}

	// alice leaves: standard input ends, she lingers, exits 0.
	alice.stdin.Close()
	if code := alice.wait(longWait); code != 0 {
		t.Errorf("alice exited with %d after her standard input ended; want 0", code)
	}

	// SIGTERM (or SIGINT): the server shuts down and exits 0; bob is told.
	sig, sigName := os.Signal(syscall.SIGTERM), "terminated"
	if framing == "raw" {
		sig, sigName = os.Interrupt, "interrupt"
	}
	if err := srv.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(longWait); code != 0 {
		t.Errorf("the server exited with %d after %v; want 0", code, sig)
	}
	for _, s := range []string{`msg="shutting down"`, "signal=" + sigName, `msg="server stopped"`} {
		if !strings.Contains(srv.stderr.String(), s) {
			t.Errorf("the server did not log %s; stderr:\n%s", s, srv.stderr.String())
		}
	}
	if code := bob.wait(longWait); code == 0 || !strings.Contains(bob.stderr.String(), "connection closed by the server") {
		t.Errorf("bob exited with %d, stderr %q, when the server went; want an error saying the connection was closed by the server", code, bob.stderr.String())
	}
}

// TestServeSecondSignal checks that a second signal during a long shutdown
// makes the server exit at once, with status 1.
func TestServeSecondSignal(t *testing.T) {
	needSignals(t)
	srv, addr := startServer(t, "--shutdown-timeout", "10m", "--send-queue", "1073741824", "--sender-limit", "none")
	// A client that sends a lot and reads nothing: its echo stays queued,
	// so the shutdown waits for it (no sender limit: the server reads it
	// all).
	nc, err := net.DialTimeout("tcp", addr, longWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	nc.SetWriteDeadline(time.Now().Add(longWait))
	for range 32 {
		if _, err := nc.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the server read it all
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !srv.stderr.waitFor(`msg="shutting down"`, longWait) {
		t.Fatal(`the server did not log "shutting down" after SIGTERM`)
	}
	time.Sleep(300 * time.Millisecond)
	if srv.exited() {
		t.Fatalf("the server exited before delivering what it had queued; stderr:\n%s", srv.stderr.String())
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(longWait); code != 1 {
		t.Errorf("the server exited with %d after a second signal; want 1", code)
	}
	if !strings.Contains(srv.stderr.String(), "second signal") {
		t.Errorf("the server did not log the second signal; stderr:\n%s", srv.stderr.String())
	}
}

// chatServer runs a chat server in process, for the client tests.
func chatServer(t *testing.T, framing chat.Framing) *chat.Server {
	t.Helper()
	srv, err := chat.New(chat.Config{Addr: "127.0.0.1:0", Backend: backends(t)[0], Framing: framing})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case <-served:
		case <-time.After(longWait):
			t.Error("Serve has not returned after Close")
		}
	})
	return srv
}

// waitActive waits until srv holds n connections.
func waitActive(t *testing.T, srv *chat.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for srv.Stats().Active != int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d connections after %v; want %d", srv.Stats().Active, longWait, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func frame(payload string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// TestClientFrame checks that the client sends each line of its input as
// a frame, prints each frame's payload on a line of its own, and exits 0
// after --linger once its input ends.
func TestClientFrame(t *testing.T) {
	srv := chatServer(t, chat.Frame)
	const linger = time.Second
	c := start(t, "client", "client", "--addr", srv.Addr().String(), "--framing", "frame", "--quiet", "--linger", linger.String())
	peer, err := net.DialTimeout("tcp", srv.Addr().String(), longWait)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	waitActive(t, srv, 2)

	// Frames in: payloads out, one per line.
	in := concat(frame("x"), frame("ends with a newline\n"), frame(""), frame("two\nlines"))
	if _, err := peer.Write(in); err != nil {
		t.Fatal(err)
	}
	want := "x\nends with a newline\n\ntwo\nlines\n"
	c.waitOut(want)

	// Lines in: frames out. The peer gets its own frames back first.
	c.send("from the client\n")
	got := make([]byte, len(in)+len(frame("from the client")))
	peer.SetReadDeadline(time.Now().Add(longWait))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if want := concat(in, frame("from the client")); !bytes.Equal(got, want) {
		t.Errorf("the peer received %q; want %q", got, want)
	}
	c.waitOut(want + "from the client\n")

	closed := time.Now()
	c.stdin.Close()
	if code := c.wait(longWait); code != 0 {
		t.Errorf("the client exited with %d after its input ended; want 0", code)
	}
	if took := time.Since(closed); took < linger*9/10 {
		t.Errorf("the client exited %v after its input ended; want it to linger %v", took, linger)
	}
	if out := c.stdout.String(); out != want+"from the client\n" {
		t.Errorf("the client printed %q; want %q", out, want+"from the client\n")
	}
}

// TestClientServerGone checks that the client exits with an error when
// the server closes the connection.
func TestClientServerGone(t *testing.T) {
	for _, f := range []chat.Framing{chat.Raw, chat.Line, chat.Frame} {
		t.Run(f.String(), func(t *testing.T) {
			srv := chatServer(t, f)
			c := start(t, "client", "client", "--addr", srv.Addr().String(), "--framing", f.String(), "--quiet")
			waitActive(t, srv, 1)
			ctx, cancel := context.WithTimeout(context.Background(), longWait)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			code := c.wait(longWait)
			if code == 0 || !strings.Contains(c.stderr.String(), "connection closed by the server") {
				t.Errorf("the client exited with %d, stderr %q; want an error saying the connection was closed by the server", code, c.stderr.String())
			}
		})
	}
}

// TestClientCannotConnect checks the client's status when there is no
// server.
func TestClientCannotConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	c := start(t, "client", "client", "--addr", addr, "--quiet")
	if code := c.wait(longWait); code != 1 || !strings.Contains(c.stderr.String(), "cport client:") {
		t.Errorf("the client exited with %d, stderr %q; want 1 and an error", code, c.stderr.String())
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
