package load

import (
	"context"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// TestChurn churns connections through a chat server of this process:
// every one gets its echo (or just connects and closes), and the process
// comes back to its baseline.
func TestChurn(t *testing.T) {
	for _, tt := range []struct {
		name        string
		framing     chat.Framing
		connectOnly bool
	}{
		{"frame", chat.Frame, false},
		{"line", chat.Line, false},
		{"connect-only", chat.Frame, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveChat(t, chat.Config{Addr: "127.0.0.1:0", Backend: "portable", Framing: tt.framing, HalfCloseTimeout: 20 * time.Millisecond})
			const total, concurrent = 300, 20
			var progress []Progress
			var mu sync.Mutex
			rep, err := Churn(context.Background(), ChurnConfig{
				Addr:        srv.Addr().String(),
				Framing:     tt.framing,
				Total:       total,
				Concurrent:  concurrent,
				ConnectOnly: tt.connectOnly,
				ServerPID:   os.Getpid(),
				Progress: func(p Progress) {
					mu.Lock()
					progress = append(progress, p)
					mu.Unlock()
				},
				ProgressInterval: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v; server %+v", rep, rep.Server)
			if rep.Done != total || rep.Failures != 0 || rep.Failed() {
				t.Errorf("%d done, %d failed (%s); want all %d done", rep.Done, rep.Failures, rep.FirstFailure, total)
			}
			if rep.PerSec <= 0 || rep.Duration <= 0 || rep.SourceAddrs != 1 {
				t.Errorf("report %+v: want a duration, a rate and one source address", rep)
			}
			s := rep.Server
			if s == nil || !s.Back() || s.Before.RSS <= 0 || s.Before.Threads <= 0 || s.Peak.RSS < s.After.RSS {
				t.Fatalf("server %+v: want it sampled, back to its baseline", s)
			}
			if runtime.GOOS == "linux" && (s.Before.FDs <= 0 || s.After.FDs > s.Before.FDs) {
				t.Errorf("server descriptors %d before, %d after; want them counted, and back", s.Before.FDs, s.After.FDs)
			}
			// Where descriptors are not counted (Windows), settling does
			// not wait for the server to accept what its backlog holds.
			for deadline := time.Now().Add(30 * time.Second); srv.Stats().Accepted < total && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if st := srv.Stats(); st.Accepted != total || (!tt.connectOnly && st.Relayed != total) {
				t.Errorf("server stats %+v; want %d accepted and, unless connect-only, relayed", st, total)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(progress) == 0 {
				t.Error("no progress reported")
			}
			for _, p := range progress {
				if p.Phase != PhaseSettle && (p.Phase != PhaseChurn || p.Total != total || p.Done > total) {
					t.Errorf("progress %+v; want churn reports of %d connections, then settle reports", p, total)
					break
				}
			}
		})
	}
}

// holdingServer accepts connections and holds them until the test ends:
// a server that leaks them.
func holdingServer(t *testing.T, accepted func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			if accepted != nil {
				accepted(c)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A server that keeps what it accepted does not come back to its
// baseline: the report says so, and fails.
func TestChurnNotBack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("descriptors are counted on Linux")
	}
	addr := holdingServer(t, nil)
	rep, err := Churn(context.Background(), ChurnConfig{Addr: addr, Total: 50, Concurrent: 10, ConnectOnly: true,
		ServerPID: os.Getpid(), SettleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Server
	if rep.Done != 50 || s == nil || s.Back() || !rep.Failed() || s.After.FDs < s.Before.FDs+50 || s.Settle < 300*time.Millisecond {
		t.Errorf("report %+v, server %+v; want 50 done, the server 50 descriptors above its baseline after the settle timeout, failed", rep, s)
	}
}

// Connections that the server closes before their echo are counted as
// failed, with the reason.
func TestChurnNoEcho(t *testing.T) {
	addr := holdingServer(t, func(c net.Conn) { c.Close() })
	rep, err := Churn(context.Background(), ChurnConfig{Addr: addr, Total: 20, Concurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failures != 20 || !rep.Failed() || !strings.Contains(rep.FirstFailure, "before the echo") {
		t.Errorf("report %+v; want 20 failed before their echo", rep)
	}
}

// A connect that fails stops the churn with an error.
func TestChurnRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Churn(context.Background(), ChurnConfig{Addr: addr, Total: 10, Concurrent: 2})
	if err == nil || !strings.Contains(err.Error(), "is the server running?") {
		t.Errorf("churn against a closed port: %v; want a connect error", err)
	}
	if _, err := Churn(context.Background(), ChurnConfig{Total: -1}); err == nil {
		t.Error("a churn of -1 connections ran")
	}
}
