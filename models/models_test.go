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

// TestRunTiny runs the select and poll models at N=10 for about a second
// each through a cport binary built for the test, and checks that the
// report holds positive numbers.
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
		Models:  []Model{{"select", "select"}, {"poll", "poll"}},
		Ns:      []int{10},
		Warmup:  200 * time.Millisecond,
		Window:  time.Second,
		IdleFor: 300 * time.Millisecond,
		Log:     os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != 2 {
		t.Fatalf("%d points; want 2", len(rep.Points))
	}
	md := Markdown(rep)
	for _, p := range rep.Points {
		if p.Skipped != "" {
			t.Errorf("%s: point skipped: %s", p.Model, p.Skipped)
			continue
		}
		for name, v := range map[string]float64{
			"messages": float64(p.Messages), "cpu_s": p.CPU, "cpu_per_msg_us": p.CPUPerMsgUS,
			"p50_us": p.P50US, "p99_us": p.P99US, "ctxt_switches_per_msg": p.CtxPerMsg,
			"rss_held": float64(p.RSSHeld), "threads": float64(p.Threads),
		} {
			if !(v > 0) {
				t.Errorf("%s: %s = %v; want > 0", p.Model, name, v)
			}
		}
		if p.P99US < p.P50US {
			t.Errorf("%s: p99 %v < p50 %v", p.Model, p.P99US, p.P50US)
		}
		if p.Lost != 0 {
			t.Errorf("%s: %d echoes lost", p.Model, p.Lost)
		}
		if row := "| " + p.Model + " | 10 |"; !strings.Contains(md, row) {
			t.Errorf("markdown lacks %q:\n%s", row, md)
		}
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
