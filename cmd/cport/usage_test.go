package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"cport.dev/cport"
	"cport.dev/cport/chat"
	"cport.dev/cport/load"
)

// A usageCase is a command line with a bad value and the one line cport
// must write about it, on standard error, before exiting with status 2.
type usageCase struct {
	args []string
	want string
}

// checkUsage runs each case's command line, prefix then args, in process.
func checkUsage(t *testing.T, prefix []string, cases []usageCase) {
	t.Helper()
	for _, tt := range cases {
		args := append(append([]string(nil), prefix...), tt.args...)
		code, out, errOut := runCmd(args...)
		if code != 2 || errOut != tt.want+"\n" || out != "" {
			t.Errorf("cport %s: status %d, stdout %q, stderr %q; want status 2 and only %q",
				strings.Join(args, " "), code, out, errOut, tt.want)
		}
	}
}

// busyAddr returns a loopback address in use until the test ends: a server
// that took a bad value for a good one fails to listen there and exits
// with status 1, instead of serving.
func busyAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestServeUsage: every flag of cport serve rejects what is out of its
// range, naming the flag, the range and the value, with status 2.
func TestServeUsage(t *testing.T) {
	backends := orList(append([]string{"auto"}, cport.Backends()...))
	checkUsage(t, []string{"serve", "--addr", busyAddr(t)}, []usageCase{
		{[]string{"--workers", "-1"}, "cport serve: --workers: must be between 0 and 4096, got -1"},
		{[]string{"--workers", "4097"}, "cport serve: --workers: must be between 0 and 4096, got 4097"},
		{[]string{"--workers", "two"}, `cport serve: --workers: must be a whole number, got "two"`},
		{[]string{"--max-message", "0"}, "cport serve: --max-message: must be between 1B and 16MiB, got 0"},
		{[]string{"--max-message", "-5"}, "cport serve: --max-message: must be between 1B and 16MiB, got -5"},
		{[]string{"--max-message", "17MiB"}, "cport serve: --max-message: must be between 1B and 16MiB, got 17MiB"},
		{[]string{"--max-message", "99999999999999999999999"}, "cport serve: --max-message: must be between 1B and 16MiB, got 99999999999999999999999"},
		{[]string{"--max-message", "1.5"}, "cport serve: --max-message: must be a whole number of bytes, got 1.5"},
		{[]string{"--max-message", "64kib"}, `cport serve: --max-message: must be a size in B, kB, MB, GB, TB, KiB, MiB, GiB or TiB, got "64kib"`},
		{[]string{"--max-message", "lots"}, `cport serve: --max-message: must be a size such as 65536, 64KiB, 4MiB or 1.5MB, got "lots"`},
		{[]string{"--send-queue", "0"}, "cport serve: --send-queue: must be between 1KiB and 1GiB, got 0"},
		{[]string{"--send-queue", "2GiB"}, "cport serve: --send-queue: must be between 1KiB and 1GiB, got 2GiB"},
		{[]string{"--send-queue", "1KiB"}, "cport serve: --send-queue: must be 64KiB or more, to hold one message of --max-message 64KiB (a smaller queue disconnects every client), got 1KiB"},
		{[]string{"--send-queue", "64KiB", "--framing", "frame"}, "cport serve: --send-queue: must be 65540B or more, to hold one message of --max-message 64KiB and its 4-byte frame length (a smaller queue disconnects every client), got 64KiB"},
		{[]string{"--max-message", "16MiB"}, "cport serve: --send-queue: must be 16MiB or more, to hold one message of --max-message 16MiB (a smaller queue disconnects every client), got 4MiB"},
		{[]string{"--sender-limit", "-1"}, "cport serve: --sender-limit: must be between 0 and 1GiB, or none, got -1"},
		{[]string{"--sender-limit", "2GiB"}, "cport serve: --sender-limit: must be between 0 and 1GiB, or none, got 2GiB"},
		{[]string{"--sender-messages", "-1"}, "cport serve: --sender-messages: must be between 0 and 2147483647, or none, got -1"},
		{[]string{"--sender-messages", "1e3"}, `cport serve: --sender-messages: must be a whole number, got "1e3"`},
		{[]string{"--write-timeout", "-1s"}, "cport serve: --write-timeout: must be 0 or more, got -1s"},
		{[]string{"--write-timeout", "10"}, `cport serve: --write-timeout: must be a duration such as 2s, 500ms or 1m30s, got "10"`},
		{[]string{"--message-timeout", "-5m"}, "cport serve: --message-timeout: must be 0 or more, got -5m"},
		{[]string{"--max-conns", "-1"}, "cport serve: --max-conns: must be 0 or more, got -1"},
		{[]string{"--max-conns-per-ip", "-1"}, "cport serve: --max-conns-per-ip: must be 0 or more, got -1"},
		{[]string{"--accept-rate", "-1"}, "cport serve: --accept-rate: must be 0 or more, got -1"},
		{[]string{"--message-rate", "-5"}, "cport serve: --message-rate: must be 0 or more, got -5"},
		{[]string{"--accept-rate", "NaN"}, "cport serve: --accept-rate: must be a finite number, got NaN"},
		{[]string{"--accept-burst", "-1"}, "cport serve: --accept-burst: must be 0 or more, got -1"},
		{[]string{"--accept-burst", "10"}, "cport serve: --accept-burst: must be 0 without --accept-rate, got 10"},
		{[]string{"--idle-timeout", "-1s"}, "cport serve: --idle-timeout: must be 0 or more, got -1s"},
		{[]string{"--shutdown-timeout", "-1s"}, "cport serve: --shutdown-timeout: must be more than 0, got -1s"},
		{[]string{"--shutdown-timeout", "0"}, "cport serve: --shutdown-timeout: must be more than 0, got 0"},
		{[]string{"--half-close-timeout", "-1s"}, "cport serve: --half-close-timeout: must be 0 or more, got -1s"},
		{[]string{"--half-close-timeout", "soon"}, `cport serve: --half-close-timeout: must be a duration such as 2s, 500ms or 1m30s, got "soon"`},
		{[]string{"--half-close-max", "-1"}, "cport serve: --half-close-max: must be 0 or more, got -1"},
		{[]string{"--nats-max-age", "0"}, "cport serve: --nats-max-age: must be more than 0, got 0"},
		{[]string{"--nats-max-bytes", "1KiB"}, "cport serve: --nats-max-bytes: must be 1MiB or more, got 1KiB"},
		{[]string{"--nats-max-bytes", "-1"}, "cport serve: --nats-max-bytes: must be 1MiB or more, got -1"},
		{[]string{"--nats-replicas", "0"}, "cport serve: --nats-replicas: must be between 1 and 5, got 0"},
		{[]string{"--nats-replicas", "6"}, "cport serve: --nats-replicas: must be between 1 and 5, got 6"},
		{[]string{"--nats-storage", "disk"}, "cport serve: --nats-storage: must be file or memory, got disk"},
		{[]string{"--backend", "nosuch"}, "cport serve: --backend: must be " + backends + ", got nosuch"},
		{[]string{"--log-format", "xml"}, "cport serve: --log-format: must be text or json, got xml"},
		{[]string{"--log-level", "loud"}, "cport serve: --log-level: must be debug, info, warn or error, got loud"},
		{[]string{"--no-echo=maybe"}, "cport serve: --no-echo: must be true or false, got maybe"},
		{[]string{"--pprof"}, "cport serve: --pprof: needs --metrics-addr, the address to serve the profiles on"},
		{[]string{"--metrics-addr", "9125"}, "cport serve: --metrics-addr: must be a host:port such as 127.0.0.1:9125, got 9125"},
		{[]string{"--stats-interval", "-1m"}, "cport serve: --stats-interval: must be 0 or more, got -1m"},
	})
}

// TestServeParse: good values give the server's configuration they say;
// 0 meaning none on the command line is chat.Config's negative.
func TestServeParse(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		check func(c chat.Config) bool
	}{
		{nil, func(c chat.Config) bool {
			return c.Workers == 0 && c.MaxMessage == 64<<10 && c.SendQueue == 4<<20 && c.SenderLimit == 0 &&
				c.WriteTimeout == chat.DefaultWriteTimeout && c.MessageTimeout == chat.DefaultMessageTimeout &&
				c.MaxConns == 0 && c.MaxConnsPerIP == 0 && c.AcceptRate == 0 && c.AcceptBurst == 0 && c.IdleTimeout == 0 &&
				c.ShutdownTimeout == chat.DefaultShutdownTimeout && c.HalfCloseTimeout == chat.DefaultHalfCloseTimeout &&
				c.HalfCloseMax == chat.DefaultHalfCloseMax && c.NATSMaxAge == chat.DefaultNATSMaxAge &&
				c.NATSMaxBytes == chat.DefaultNATSMaxBytes && c.NATSReplicas == 1 && c.Framing == chat.Raw &&
				c.ReleaseMemory && c.Logger != nil
		}},
		{[]string{"--workers", "4096"}, func(c chat.Config) bool { return c.Workers == 4096 }},
		{[]string{"--max-message", "1.5MB", "--send-queue", "64MiB"}, func(c chat.Config) bool {
			return c.MaxMessage == 1500000 && c.SendQueue == 64<<20
		}},
		{[]string{"--max-message", "16MiB", "--send-queue", "16MiB", "--framing", "line"}, func(c chat.Config) bool {
			return c.MaxMessage == 16<<20 && c.SendQueue == 16<<20 && c.Framing == chat.Line
		}},
		{[]string{"--max-message", "1kB", "--send-queue", "1028", "--framing", "frame"}, func(c chat.Config) bool {
			return c.MaxMessage == 1000 && c.SendQueue == 1028 && c.Framing == chat.Frame
		}},
		{[]string{"--max-message", "1KiB", "--send-queue", "1KiB"}, func(c chat.Config) bool {
			return c.MaxMessage == 1024 && c.SendQueue == 1024
		}},
		{[]string{"--send-queue", "1GiB"}, func(c chat.Config) bool { return c.SendQueue == 1<<30 }},
		{[]string{"--send-queue", "1073741824"}, func(c chat.Config) bool { return c.SendQueue == 1<<30 }},
		{[]string{"--sender-limit", "none"}, func(c chat.Config) bool { return c.SenderLimit < 0 }},
		{[]string{"--sender-limit", "64KiB"}, func(c chat.Config) bool { return c.SenderLimit == 64<<10 }},
		{[]string{"--sender-limit", "0"}, func(c chat.Config) bool { return c.SenderLimit == 0 }},
		{[]string{"--sender-messages", "none"}, func(c chat.Config) bool { return c.SenderMessages < 0 }},
		{[]string{"--sender-messages", "256"}, func(c chat.Config) bool { return c.SenderMessages == 256 }},
		{[]string{"--write-timeout", "0", "--message-timeout", "0", "--half-close-timeout", "0", "--half-close-max", "0"}, func(c chat.Config) bool {
			return c.WriteTimeout < 0 && c.MessageTimeout < 0 && c.HalfCloseTimeout < 0 && c.HalfCloseMax < 0
		}},
		{[]string{"--write-timeout", "2s", "--message-timeout", "1m", "--idle-timeout", "90s"}, func(c chat.Config) bool {
			return c.WriteTimeout == 2*time.Second && c.MessageTimeout == time.Minute && c.IdleTimeout == 90*time.Second
		}},
		{[]string{"--message-rate", "50"}, func(c chat.Config) bool { return c.MessageRate == 50 }},
		{[]string{"--max-conns", "15000", "--max-conns-per-ip", "100", "--accept-rate", "100.5", "--accept-burst", "20"}, func(c chat.Config) bool {
			return c.MaxConns == 15000 && c.MaxConnsPerIP == 100 && c.AcceptRate == 100.5 && c.AcceptBurst == 20
		}},
		{[]string{"--shutdown-timeout", "1ms"}, func(c chat.Config) bool { return c.ShutdownTimeout == time.Millisecond }},
		{[]string{"--nats-max-bytes", "1GB", "--nats-replicas", "5", "--nats-max-age", "1h"}, func(c chat.Config) bool {
			return c.NATSMaxBytes == 1e9 && c.NATSReplicas == 5 && c.NATSMaxAge == time.Hour
		}},
		{[]string{"--backend", "auto", "--log-format", "json", "--log-level", "debug"}, func(c chat.Config) bool { return c.Backend == "auto" }},
	} {
		fs := flag.NewFlagSet("cport serve", flag.ContinueOnError)
		var out bytes.Buffer
		fs.SetOutput(&out)
		cfg, err := parseServe(fs, tt.args)
		if err != nil || out.Len() > 0 {
			t.Errorf("cport serve %s: %v, output %q; want it accepted", strings.Join(tt.args, " "), err, out.String())
			continue
		}
		if !tt.check(cfg.Config) {
			t.Errorf("cport serve %s: configuration %+v", strings.Join(tt.args, " "), cfg)
		}
	}
}

// TestServeGoodFlags: cport serve starts with good values of the new
// flags and sizes with units, and stops on SIGTERM.
func TestServeGoodFlags(t *testing.T) {
	needSignals(t)
	srv, addr := startServer(t, "--framing", "frame", "--max-message", "1MiB", "--send-queue", "64MiB", "--sender-limit", "none",
		"--write-timeout", "0", "--message-timeout", "1m", "--max-conns-per-ip", "100", "--accept-rate", "1000", "--accept-burst", "50",
		"--workers", "3", "--shutdown-timeout", "2s")
	c, err := net.DialTimeout("tcp", addr, longWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(longWait))
	if _, err := c.Write(frame("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(frame("hello")))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, frame("hello")) {
		t.Fatalf("echo %q, %v; want %q", got, err, frame("hello"))
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(longWait); code != 0 {
		t.Errorf("the server exited with %d after SIGTERM; want 0", code)
	}
}

// TestLoadUsageErrors: cport load's flags, and load idle's and load
// churn's, reject what is out of their range with status 2. The server
// address refuses connections: a bad value taken for a good one would make
// the run fail with status 1.
func TestLoadUsageErrors(t *testing.T) {
	const nowhere = "127.0.0.1:1"
	checkUsage(t, []string{"load", "--addr", nowhere}, []usageCase{
		{[]string{"--clients", "0"}, "cport load: --clients: must be 1 or more, got 0"},
		{[]string{"--clients", "-3"}, "cport load: --clients: must be 1 or more, got -3"},
		{[]string{"--senders", "0"}, "cport load: --senders: must be 1 or more, got 0"},
		{[]string{"--senders", "11", "--clients", "10"}, "cport load: --senders: must be 10 (--clients) or fewer, got 11"},
		{[]string{"--size", "0"}, "cport load: --size: must be between 41B and 1MiB, got 0"},
		{[]string{"--size", "-64"}, "cport load: --size: must be between 41B and 1MiB, got -64"},
		{[]string{"--size", "2MiB"}, "cport load: --size: must be between 41B and 1MiB, got 2MiB"},
		{[]string{"--size", "1.5MB"}, "cport load: --size: must be between 41B and 1MiB, got 1.5MB"},
		{[]string{"--size", "0.01KB"}, "cport load: --size: must be between 41B and 1MiB, got 0.01KB"},
		{[]string{"--size", "100.5"}, "cport load: --size: must be a whole number of bytes, got 100.5"},
		{[]string{"--size", "41", "--framing", "line"}, "cport load: --size: must be between 42B and 1MiB with line framing, got 41B"},
		{[]string{"--window", "0"}, "cport load: --window: must be 1 or more, got 0"},
		{[]string{"--rate", "-1"}, "cport load: --rate: must be 0 or more, got -1"},
		{[]string{"--warmup", "-1s"}, "cport load: --warmup: must be 0 or more, got -1s"},
		{[]string{"--duration", "0"}, "cport load: --duration: must be more than 0, got 0"},
		{[]string{"--duration", "24h", "--warmup", "1s"}, "cport load: --warmup and --duration: must add up to 24h0m0s or less, got 24h0m1s"},
		{[]string{"--drain-timeout", "0"}, "cport load: --drain-timeout: must be more than 0, got 0"},
		{[]string{"--connect-rate", "-5"}, "cport load: --connect-rate: must be 0 or more, got -5"},
		{[]string{"--register-timeout", "-1s"}, "cport load: --register-timeout: must be more than 0, got -1s"},
		{[]string{"--framing", "raw"}, "cport load: --framing: must be auto, frame or line, got raw"},
		{[]string{"--server-pid", "x"}, `cport load: --server-pid: must be process ids, comma-separated, got "x" in x`},
		{[]string{"--addr", "127.0.0.1:1,127.0.0.1:2", "--clients", "1", "--senders", "1"}, "cport load: --clients: must be 2 or more, one for each --addr server, got 1"},
		{[]string{"--addr", "127.0.0.1:1,127.0.0.1:2", "--senders", "1"}, "cport load: --senders: must be 2 or more, one for each --addr server, got 1"},
	})
	checkUsage(t, []string{"load", "idle", "--addr", nowhere}, []usageCase{
		{[]string{"--clients", "0"}, "cport load idle: --clients: must be 1 or more, got 0"},
		{[]string{"--duration", "-1s"}, "cport load idle: --duration: must be more than 0, got -1s"},
		{[]string{"--connect-rate", "Inf"}, "cport load idle: --connect-rate: must be a finite number, got Inf"},
		{[]string{"--window", "3"}, "cport load idle: --window: no such flag (cport load idle -h lists them)"},
	})
	checkUsage(t, []string{"load", "churn", "--addr", nowhere}, []usageCase{
		{[]string{"--total", "0"}, "cport load churn: --total: must be 1 or more, got 0"},
		{[]string{"--concurrent", "-1"}, "cport load churn: --concurrent: must be 1 or more, got -1"},
		{[]string{"--size", "8"}, "cport load churn: --size: must be 0 or between 41B and 1MiB with frame framing, got 8B"},
		{[]string{"--size", "2MiB"}, "cport load churn: --size: must be between 0 and 1MiB, got 2MiB"},
		{[]string{"--echo-timeout", "0"}, "cport load churn: --echo-timeout: must be more than 0, got 0"},
		{[]string{"--settle-timeout", "-1s"}, "cport load churn: --settle-timeout: must be more than 0, got -1s"},
		{[]string{"--server-pid", "-3"}, "cport load churn: --server-pid: must be 0 or more, got -3"},
	})
}

// TestLoadSizeUnits: cport load takes --size with a unit.
func TestLoadSizeUnits(t *testing.T) {
	addr := startChat(t, chat.Frame)
	code, out, errs := runLoadCmd(t, "load", "--addr", addr, "--clients", "2", "--senders", "1", "--size", "1KiB",
		"--duration", "200ms", "--warmup", "0", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, errs, out)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if rep.Size != 1024 {
		t.Errorf("the report gives %d-byte messages; want 1024", rep.Size)
	}
}

// TestModelsUsage: cport models rejects what is out of its flags' range
// with status 2. The command lines name a model that does not exist: a bad
// value taken for a good one stops there instead of running the models.
func TestModelsUsage(t *testing.T) {
	checkUsage(t, []string{"models", "--models", "nosuch"}, []usageCase{
		{[]string{"--k", "-3"}, "cport models: --k: must be 1 or more, got -3"},
		{[]string{"--k", "0"}, "cport models: --k: must be 1 or more, got 0"},
		{[]string{"--rate", "0"}, "cport models: --rate: must be more than 0, got 0"},
		{[]string{"--rate", "-1"}, "cport models: --rate: must be more than 0, got -1"},
		{[]string{"--window", "-1s"}, "cport models: --window: must be 0 or more, got -1s"},
		{[]string{"--idle", "-1s"}, "cport models: --idle: must be 0 or more, got -1s"},
		{[]string{"--n", "10,0"}, `cport models: --n: must be counts of 1 or more, comma-separated, got "0" in 10,0`},
		{[]string{"--n", "x"}, `cport models: --n: must be counts of 1 or more, comma-separated, got "x" in x`},
		{[]string{"extra"}, `cport models: unexpected arguments: ["extra"]`},
		// Good values get as far as --models.
		{[]string{"--k", "5", "--rate", "0.5", "--window", "0", "--idle", "1s", "--n", "10,100"},
			"cport models: --models: must be models among " + modelNames() + `, comma-separated, got "nosuch"`},
	})
}
