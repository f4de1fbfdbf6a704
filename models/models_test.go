package models

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunTiny runs one model at N=10 for about a second through a cport
// binary built for the test, and checks that the report holds positive
// numbers.
func TestRunTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cport and runs a server")
	}
	exe := filepath.Join(t.TempDir(), "cport")
	build := exec.Command("go", "build", "-o", exe, "cport.dev/cport/cmd/cport")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Exe:     exe,
		Models:  []Model{{"poll", "poll"}},
		Ns:      []int{10},
		Warmup:  200 * time.Millisecond,
		Window:  time.Second,
		IdleFor: 300 * time.Millisecond,
		Log:     os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != 1 {
		t.Fatalf("%d points; want 1", len(rep.Points))
	}
	p := rep.Points[0]
	if p.Skipped != "" {
		t.Fatalf("point skipped: %s", p.Skipped)
	}
	for name, v := range map[string]float64{
		"messages": float64(p.Messages), "cpu_s": p.CPU, "cpu_per_msg_us": p.CPUPerMsgUS,
		"p50_us": p.P50US, "p99_us": p.P99US, "ctxt_switches_per_msg": p.CtxPerMsg,
		"rss_held": float64(p.RSSHeld), "threads": float64(p.Threads),
	} {
		if !(v > 0) {
			t.Errorf("%s = %v; want > 0", name, v)
		}
	}
	if p.P99US < p.P50US {
		t.Errorf("p99 %v < p50 %v", p.P99US, p.P50US)
	}
	if p.Lost != 0 {
		t.Errorf("%d echoes lost", p.Lost)
	}
	md := Markdown(rep)
	if !strings.Contains(md, "| poll | 10 |") {
		t.Errorf("markdown lacks the point:\n%s", md)
	}
}

// TestSkipNoFile: a point past the open-files limit is skipped with the
// reason, without starting anything.
func TestSkipNoFile(t *testing.T) {
	pt := Point{Model: "epoll", Backend: "epoll", N: 50000}
	err := runPoint(context.Background(), Config{K: 10}.withDefaults(), &pt, 20000)
	if _, ok := err.(errSkip); !ok || !strings.Contains(err.Error(), "RLIMIT_NOFILE is 20000") {
		t.Fatalf("err = %v; want a skip naming RLIMIT_NOFILE", err)
	}
}
