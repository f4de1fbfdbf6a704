package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// startChat starts a chat server on a free loopback port.
func startChat(t *testing.T, f chat.Framing) string {
	t.Helper()
	srv, err := chat.New(chat.Config{Addr: "127.0.0.1:0", Backend: "portable", Framing: f})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(); close(served) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return srv.Addr().String()
}

// runLoadCmd runs cport with args and returns its exit status, its report
// and its standard error.
func runLoadCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	old := loadStdout
	loadStdout = &out
	defer func() { loadStdout = old }()
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLoad(t *testing.T) {
	for _, f := range []chat.Framing{chat.Frame, chat.Line} {
		t.Run(f.String(), func(t *testing.T) {
			addr := startChat(t, f)
			code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--framing", f.String(),
				"--clients", "20", "--senders", "3", "--duration", "1s", "--warmup", "100ms", "--json", "--quiet")
			if code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
			}
			var rep load.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, out)
			}
			if rep.Errors != (load.Errors{}) {
				t.Errorf("errors %+v", rep.Errors)
			}
			if rep.Sent == 0 || rep.Delivered != rep.Sent*20 {
				t.Errorf("sent %d, delivered %d; want a positive number sent, delivered 20 times", rep.Sent, rep.Delivered)
			}
			if d := rep.Driver; d == nil || d.Err != "" || d.CPUPerDelivery <= 0 || d.Reads <= 0 || d.DeliveriesPerRead < 1 {
				t.Errorf("driver usage %+v", d)
			}
		})
	}
}

// tempDir is t.TempDir whose removal may fail: under Wine, removing what
// a test wrote there fails ("unlinkat: Invalid function"), which is
// Wine's doing, not the test's.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cport-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestLoadText(t *testing.T) {
	addr := startChat(t, chat.Frame)
	profile := filepath.Join(tempDir(t), "cpu.pprof")
	code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--clients", "5", "--senders", "2",
		"--duration", "300ms", "--warmup", "0", "--server-pid", strconv.Itoa(os.Getpid()), "--cpuprofile", profile, "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	for _, want := range []string{"accepted/s", "deliveries", "p99.9", "lost 0  duplicated 0  reordered 0  corrupted 0", "ns per delivery", "RSS",
		"driver       CPU ", " ns/delivery (user+sys: ", "deliveries per read (", "result       OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// A profile is gzipped protocol buffers.
	if b, err := os.ReadFile(profile); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpuprofile wrote %d bytes (%v), not a profile", len(b), err)
	}
}

// An unwritable --cpuprofile is an error before anything runs.
func TestLoadCPUProfileUnwritable(t *testing.T) {
	code, out, errs := runLoadCmd(t, "load", "--addr", "127.0.0.1:1", "--cpuprofile", filepath.Join(tempDir(t), "no", "such", "dir"), "--quiet")
	if code == 0 || !strings.Contains(errs, "--cpuprofile") {
		t.Errorf("exit status %d, stderr %q, stdout %q; want an error about --cpuprofile", code, errs, out)
	}
}

// Two addresses of one room (a server, and a relay to it) are driven as
// one, and the report shows both, with each one's usage and their sum.
func TestLoadTwoAddrs(t *testing.T) {
	addr := startChat(t, chat.Frame)
	relay := dropRelay(t, addr, math.MaxInt)
	pid := strconv.Itoa(os.Getpid())
	code, out, errs := runLoadCmd(t, "load", "--addr", addr+", "+relay, "--clients", "6", "--senders", "2",
		"--duration", "300ms", "--warmup", "0", "--server-pid", pid+","+pid, "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	for _, want := range []string{"target       2 servers (" + addr + ", " + relay + ")", "servers      sum of 2: cpu",
		"pid " + pid + " (" + relay + "): cpu", "lost 0  duplicated 0  reordered 0  corrupted 0", "result       OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// Against a relay that drops every 100th message, cport load exits with 1.
func TestLoadDetectsLoss(t *testing.T) {
	addr := dropRelay(t, startChat(t, chat.Frame), 100)
	// Open loop: 300 messages per receiver, however slow the machine.
	code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--clients", "10", "--senders", "2", "--rate", "300",
		"--duration", "500ms", "--warmup", "0", "--drain-timeout", "1s", "--quiet")
	if code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	if !strings.Contains(errs, "lost") || !strings.Contains(out, "FAILED") {
		t.Errorf("no loss reported; stderr:\n%s\nstdout:\n%s", errs, out)
	}
}

func TestLoadIdle(t *testing.T) {
	addr := startChat(t, chat.Frame)
	// The server's memory is this process's: start from as little as can be.
	runtime.GC()
	debug.FreeOSMemory()
	code, out, errs := runLoadCmd(t, "load", "idle", "--addr", addr, "--clients", "300",
		"--duration", "200ms", "--server-pid", strconv.Itoa(os.Getpid()), "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.IdleReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if s := rep.Server; s == nil || s.Err != "" || s.RSSPerConn <= 0 || s.ThreadsAfter <= 0 {
		t.Errorf("server usage %+v", s)
	}
}

func TestLoadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"load", "--clients", "0"},
		{"load", "--framing", "raw"},
		{"load", "--framing", "json"},
		{"load", "extra"},
		{"load", "idle", "--window", "3"},
		{"load", "--addr", "127.0.0.1:1,,127.0.0.1:2"},
		{"load", "--addr", "127.0.0.1:1,127.0.0.1:1"},
		{"load", "--addr", "127.0.0.1"},
		{"load", "--addr", "127.0.0.1:1,127.0.0.1:2", "--server-pid", "1"},
		{"load", "--server-pid", "x"},
		{"load", "idle", "--addr", "127.0.0.1:1,127.0.0.1:2", "--server-pid", "1,2"},
	} {
		if code, _, _ := runLoadCmd(t, args...); code != 2 {
			t.Errorf("%q: exit status %d, want 2", args, code)
		}
	}
}

// dropRelay forwards clients to a frame server, dropping every nth message
// that the server sends to each client.
func dropRelay(t *testing.T, upstream string, nth int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, down); up.Close() }()
			go func() {
				defer wg.Done()
				defer down.Close()
				br, bw := bufio.NewReader(up), bufio.NewWriter(down)
				for n := 1; ; n++ {
					var hdr [4]byte
					if _, err := io.ReadFull(br, hdr[:]); err != nil {
						return
					}
					msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(br, msg); err != nil {
						return
					}
					if n%nth != 0 {
						bw.Write(hdr[:])
						bw.Write(msg)
					}
					if br.Buffered() == 0 && bw.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
