package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// abuseArgs are the arguments of a quick cport load abuse run.
func abuseArgs(addr string, more ...string) []string {
	return append([]string{"load", "abuse", "--addr", addr, "--good", "4", "--baseline", "300ms", "--abuse", "300ms",
		"--recovery", "300ms", "--server-pid", strconv.Itoa(os.Getpid()), "--quiet"}, more...)
}

// Cases the server passes: exit status 0, a JSON report of each, and a
// table in text.
func TestLoadAbuse(t *testing.T) {
	addr := startChat(t, chat.Frame)
	code, out, errs := runLoadCmd(t, abuseArgs(addr, "--case", "oversize,garbage", "--json")...)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.AbuseReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if len(rep.Cases) != 2 || rep.Cases[0].Case != "oversize" || rep.Cases[1].Case != "garbage" || rep.Failed() {
		t.Fatalf("report %+v; want oversize and garbage, passed", rep)
	}
	for _, c := range rep.Cases {
		if len(c.Phases) != 3 || c.Abuser.Closed != 1 || c.Phases[0].Server == nil {
			t.Errorf("case %s: %+v; want three phases, the server's usage, the abuser closed", c.Case, c)
		}
	}

	code, out, errs = runLoadCmd(t, abuseArgs(addr, "--case", "oversize")...)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	for _, want := range []string{"case oversize", "baseline", "abuse", "recovery", "deliv/s", "orphan", "closed by the server", "result     OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// A case that fails its criterion: exit status 1, the case named. The
// server has no deadline for a message: the drip is never closed.
func TestLoadAbuseFails(t *testing.T) {
	addr := startChat(t, chat.Line)
	code, out, errs := runLoadCmd(t, abuseArgs(addr, "--framing", "line", "--case", "drip", "--wait", "200ms")...)
	if code != 1 || !strings.Contains(errs, "checks failed: drip") || !strings.Contains(out, "result     FAILED: the server closed 0 of the 1 abusers") {
		t.Errorf("exit status %d; want 1, the drip failed; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
}

func TestLoadAbuseUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--case", "nosuch"},
		{"--case", "sigterm"},
		{"--case", "sigterm", "--allow-signal"},
		{"--good", "-1"},
		{"--abuse", "-1s"},
		{"--framing", "raw"},
		{"--addr", "nowhere"},
		{"extra"},
	} {
		code, out, errs := runLoadCmd(t, append([]string{"load", "abuse", "--quiet"}, args...)...)
		if code != 2 || errs == "" {
			t.Errorf("cport load abuse %q: exit status %d, stderr %q, stdout %q; want 2 and a message", args, code, errs, out)
		}
	}
}

// Against a raw server (cport serve's default), whose messages have no
// boundaries to judge the cases by, load abuse says so and exits 1; told
// the framing of a line server, it takes it.
func TestLoadAbuseFraming(t *testing.T) {
	raw := startChat(t, chat.Raw)
	code, out, errs := runLoadCmd(t, abuseArgs(raw, "--case", "oversize")...)
	want := "cport load abuse: the server relays raw reads (cport serve's default framing), where abuse has no message to judge: start it with --framing frame or line\n"
	if code != 1 || errs != want || out != "" {
		t.Errorf("raw server: exit status %d, stderr %q, stdout %q; want 1 and %q", code, errs, out, want)
	}
	line := startChat(t, chat.Line)
	code, out, errs = runLoadCmd(t, abuseArgs(line, "--case", "oversize", "--json")...)
	var rep load.AbuseReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Framing != "line" {
		t.Errorf("line server: exit status %d, framing %q; want 0, line; stderr:\n%s\nstdout:\n%s", code, rep.Framing, errs, out)
	}
}
