package main

import (
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
)

// configLine returns the --print-config line of flag name: its value and
// its source.
func configLine(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^--` + regexp.QuoteMeta(name) + ` +(.*?) *$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--print-config does not list --%s:\n%s", name, out)
	}
	return strings.Join(strings.Fields(m[1]), " ")
}

// TestEnvConfig: CPORT_<FLAG> sets a flag not on the command line; the
// command line wins; --print-config says where each value came from.
func TestEnvConfig(t *testing.T) {
	t.Setenv("CPORT_MAX_MESSAGE", "1KiB")
	t.Setenv("CPORT_SEND_QUEUE", "64KiB")
	t.Setenv("CPORT_FRAMING", "line")
	t.Setenv("CPORT_STATS_INTERVAL", "5s")
	code, out, errOut := runCmd("serve", "--print-config", "--framing", "frame")
	if code != 0 || errOut != "" {
		t.Fatalf("cport serve --print-config: status %d, stderr %q", code, errOut)
	}
	for name, want := range map[string]string{
		"max-message":    "1KiB env CPORT_MAX_MESSAGE",
		"send-queue":     "64KiB env CPORT_SEND_QUEUE",
		"framing":        "frame flag",
		"stats-interval": "5s env CPORT_STATS_INTERVAL",
		"addr":           ":25000 default",
	} {
		if got := configLine(t, out, name); got != want {
			t.Errorf("--print-config: --%s %q; want %q", name, got, want)
		}
	}
	fs := flag.NewFlagSet("cport serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	sc, err := parseServe(fs, nil)
	if err != nil || sc.MaxMessage != 1024 || sc.SendQueue != 64<<10 || sc.StatsInterval.Seconds() != 5 {
		t.Errorf("parseServe with CPORT_ variables: %+v, %v; want --max-message 1KiB, --send-queue 64KiB, --stats-interval 5s", sc, err)
	}
}

// TestEnvConfigBad: a bad value in the environment is a usage error that
// names the variable and its flag, whether its flag refuses it or a check
// after the parse does.
func TestEnvConfigBad(t *testing.T) {
	for _, tt := range []struct{ name, value, want string }{
		{"CPORT_MAX_MESSAGE", "lots", `cport serve: CPORT_MAX_MESSAGE (for --max-message): must be a size such as 65536, 64KiB, 4MiB or 1.5MB, got "lots"`},
		{"CPORT_LOG_FORMAT", "xml", "cport serve: CPORT_LOG_FORMAT (for --log-format): must be text or json, got xml"},
		{"CPORT_METRICS_ADDR", "9125", "cport serve: CPORT_METRICS_ADDR (for --metrics-addr): must be a host:port such as 127.0.0.1:9125, got 9125"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.name, tt.value)
			code, out, errOut := runCmd("serve", "--print-config")
			if code != 2 || out != "" || errOut != tt.want+"\n" {
				t.Errorf("%s=%s cport serve: status %d, stdout %q, stderr %q; want 2 and %q", tt.name, tt.value, code, out, errOut, tt.want)
			}
		})
	}
}
