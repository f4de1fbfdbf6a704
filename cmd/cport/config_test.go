package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeConfig writes a configuration file of text and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(tempDir(t), "cport.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseServeArgs parses cport serve's command line args as runServe does;
// a usage error is what cport would say.
func parseServeArgs(args ...string) (serveConfig, error) {
	fs := flag.NewFlagSet("cport serve", flag.ContinueOnError)
	var said strings.Builder
	fs.SetOutput(&said)
	sc, err := parseServe(fs, args)
	if errors.Is(err, errUsage) {
		err = errors.New(strings.TrimSpace(said.String()))
	}
	return sc, err
}

// TestConfigFile: the file sets flags of every kind, each value as the
// command line would set it; --print-config names the file as the source.
func TestConfigFile(t *testing.T) {
	path := writeConfig(t, `# a comment
max-message = "1KiB"
send-queue = 65536
workers = 4
idle-timeout = "5m"
no-echo = true
message-rate = 2.5
accept-rate = 10
sender-messages = "none"
framing = "line"
nats-storage = "memory"
write-timeout = "0s"
`)
	sc, err := parseServeArgs("--config", path)
	if err != nil {
		t.Fatalf("cport serve --config %s: %v", path, err)
	}
	if sc.MaxMessage != 1024 || sc.SendQueue != 64<<10 || sc.Workers != 4 || sc.IdleTimeout != 5*time.Minute ||
		!sc.NoEcho || sc.MessageRate != 2.5 || sc.AcceptRate != 10 || sc.SenderMessages != -1 ||
		sc.Framing.String() != "line" || sc.NATSStorage != "memory" || sc.WriteTimeout != -1 {
		t.Errorf("cport serve --config: %+v; want every value of the file", sc.Config)
	}
	code, out, errOut := runCmd("serve", "--config", path, "--print-config")
	if code != 0 || errOut != "" {
		t.Fatalf("cport serve --config --print-config: status %d, stderr %q", code, errOut)
	}
	for name, want := range map[string]string{
		"max-message":  "1KiB file " + path,
		"workers":      "4 file " + path,
		"idle-timeout": "5m0s file " + path,
		"no-echo":      "true file " + path,
		"config":       path + " flag",
		"addr":         ":25000 default",
	} {
		if got := configLine(t, out, name); got != want {
			t.Errorf("--print-config: --%s %q; want %q", name, got, want)
		}
	}
}

// TestConfigPrecedence: a flag on the command line wins over the
// environment, which wins over the file, which wins over the default;
// CPORT_CONFIG names the file.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `
max-message = "1KiB"
send-queue = "64KiB"
framing = "line"
workers = 3
`)
	t.Setenv("CPORT_CONFIG", path)
	t.Setenv("CPORT_SEND_QUEUE", "128KiB")
	t.Setenv("CPORT_FRAMING", "raw")
	code, out, errOut := runCmd("serve", "--print-config", "--framing", "frame")
	if code != 0 || errOut != "" {
		t.Fatalf("cport serve --print-config: status %d, stderr %q", code, errOut)
	}
	for name, want := range map[string]string{
		"max-message": "1KiB file " + path,
		"workers":     "3 file " + path,
		"send-queue":  "128KiB env CPORT_SEND_QUEUE",
		"framing":     "frame flag",
		"config":      path + " env CPORT_CONFIG",
		"backend":     "auto default",
	} {
		if got := configLine(t, out, name); got != want {
			t.Errorf("--print-config: --%s %q; want %q", name, got, want)
		}
	}
	sc, err := parseServeArgs("--framing", "frame")
	if err != nil || sc.MaxMessage != 1024 || sc.SendQueue != 128<<10 || sc.Framing.String() != "frame" || sc.Workers != 3 {
		t.Errorf("parseServe: %+v, %v; want --max-message 1KiB (file), --send-queue 128KiB (env), --framing frame (flag), --workers 3 (file)", sc.Config, err)
	}
	// A --config on the command line wins over CPORT_CONFIG.
	other := writeConfig(t, "workers = 5\n")
	sc, err = parseServeArgs("--config", other)
	if err != nil || sc.Workers != 5 || sc.MaxMessage != 64<<10 {
		t.Errorf("parseServe --config %s with CPORT_CONFIG=%s: %+v, %v; want --workers 5 and the default --max-message", other, path, sc.Config, err)
	}
}

// TestConfigFileErrors: a file that cannot be read or parsed, a key that
// is no flag, and a value of the wrong type or out of range each make cport
// serve exit with status 2 and one line naming the file and the key, even
// where the environment overrides the key.
func TestConfigFileErrors(t *testing.T) {
	t.Setenv("CPORT_WORKERS", "2")
	missing := filepath.Join(tempDir(t), "nope.toml")
	dir := tempDir(t)
	cases := []struct {
		file string // the file's text
		want string // after "cport serve: PATH: " (a prefix of the line)
	}{
		{"max-mesage = \"1KiB\"\n", "unknown key max-mesage (did you mean max-message?)"},
		{"max_message = \"1KiB\"\n", "unknown key max_message (did you mean max-message?)"},
		{"colour = \"blue\"\n", "unknown key colour: cport serve has no such flag (cport serve -h lists them)"},
		{"workers = \"4\"\n", `workers: must be a whole number, got the string "4"`},
		{"workers = 5000\n", "workers: must be between 0 and 4096, got 5000"},
		{"max-message = 0\n", "max-message: must be between 1B and 16MiB, got 0"},
		{"max-message = \"17MiB\"\n", "max-message: must be between 1B and 16MiB, got 17MiB"},
		{"max-message = 1.5\n", `max-message: must be a size: a number of bytes or a string such as "64KiB", got the float 1.5`},
		{"idle-timeout = 300\n", `idle-timeout: must be a duration in quotes, such as "2s", "500ms" or "1m30s", got the integer 300`},
		{"idle-timeout = \"-1s\"\n", "idle-timeout: must be 0 or more, got -1s"},
		{"no-echo = \"yes\"\n", `no-echo: must be true or false, got the string "yes"`},
		{"addr = 25000\n", "addr: must be a string in quotes, got the integer 25000"},
		{"sender-messages = \"lots\"\n", `sender-messages: must be a whole number or "none", got the string "lots"`},
		{"message-rate = \"5\"\n", `message-rate: must be a number, got the string "5"`},
		{"framing = \"xml\"\n", "framing: must be raw, line or frame, got xml"},
		{"nats = [\"a\", \"b\"]\n", "nats: must be a string in quotes, got an array"},
		{"[nats]\nurl = \"x\"\n", "nats: must be a string in quotes, got a table"},
		{"config = \"other.toml\"\n", "config: cannot be set in a configuration file"},
		{"print-config = true\n", "print-config: cannot be set in a configuration file"},
		{"backend = \"nosuch\"\n", "backend: must be "},
		{"log-level = \"loud\"\n", "log-level: must be debug, info, warn or error, got loud"},
		{"send-queue = \"1KiB\"\n", "send-queue: must be 64KiB or more, to hold one message of --max-message 64KiB (a smaller queue disconnects every client), got 1KiB"},
		{"addr = \":1\"\naddr = \":2\"\n", "2: Key 'addr' has already been defined."},
		{"workers = \n", "1: expected value but found '\\n' instead"},
	}
	for i, tt := range cases {
		path := filepath.Join(dir, fmt.Sprintf("c%d.toml", i))
		if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCmd("serve", "--config", path, "--print-config")
		sep := ": "
		if tt.want[0] >= '0' && tt.want[0] <= '9' {
			sep = ":" // a syntax error's line: PATH:LINE: what
		}
		want := "cport serve: " + path + sep + tt.want
		if code != 2 || out != "" || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("cport serve --config with %q: status %d, stdout %q, stderr %q; want status 2 and one line %q",
				tt.file, code, out, errOut, want)
		}
	}
	for _, tt := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--config", missing}, "", "cport serve: --config: cannot read " + missing + ": " + readErr(missing) + "\n"},
		{nil, missing, "cport serve: CPORT_CONFIG (for --config): cannot read " + missing + ": " + readErr(missing) + "\n"},
		{[]string{"--config", dir}, "", "cport serve: --config: cannot read " + dir + ": " + readErr(dir) + "\n"},
	} {
		t.Setenv("CPORT_CONFIG", tt.env)
		code, out, errOut := runCmd(append([]string{"serve", "--print-config"}, tt.args...)...)
		if code != 2 || out != "" || errOut != tt.want {
			t.Errorf("CPORT_CONFIG=%s cport serve %q: status %d, stdout %q, stderr %q; want 2 and %q", tt.env, tt.args, code, out, errOut, tt.want)
		}
	}
}

// readErr returns why the system cannot read the file at path (no such
// file or directory, is a directory: in its own words), or "".
func readErr(path string) string {
	_, err := os.ReadFile(path)
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return ""
}

// TestConfigExample: deploy/cport.toml, the example the systemd unit reads,
// parses, sets what it says, and names every flag of cport serve; with each
// commented key uncommented, it parses too. A new flag, or one renamed, is
// caught here until the example has it.
func TestConfigExample(t *testing.T) {
	const example = "../../deploy/cport.toml"
	text, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := parseServeArgs("--config", example)
	if err != nil {
		t.Fatalf("cport serve --config %s: %v", example, err)
	}
	if sc.MetricsAddr != "127.0.0.1:9125" || sc.source["metrics-addr"] != fromFile {
		t.Errorf("cport serve --config %s: --metrics-addr %q from %s; want 127.0.0.1:9125 from the file", example, sc.MetricsAddr, sc.source["metrics-addr"])
	}
	commented := regexp.MustCompile(`(?m)^# ?([a-z-]+ = )`)
	// The example's certificate files, made here.
	cert, key := writeTestCert(t)
	files := strings.NewReplacer(`"/etc/cport/cert.pem"`, strconv.Quote(cert), `"/etc/cport/key.pem"`, strconv.Quote(key))
	all := writeConfig(t, files.Replace(commented.ReplaceAllString(string(text), "$1")))
	sc, err = parseServeArgs("--config", all)
	if err != nil {
		t.Fatalf("%s with every key uncommented: %v", example, err)
	}
	fs := flag.NewFlagSet("cport serve", flag.ContinueOnError)
	defineServeFlags(fs, new(serveConfig))
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(notInFile, f.Name) {
			return
		}
		if src := sc.source[f.Name]; src != fromFile {
			t.Errorf("%s does not give --%s (with every key uncommented, its source is %s)", example, f.Name, src)
		}
	})
	// A commented key gives the default, or an example where the default
	// is none.
	var lines []string
	for _, m := range regexp.MustCompile(`(?m)^# ?([a-z-]+ = .*)$`).FindAllStringSubmatch(string(text), -1) {
		lines = append(lines, m[1])
	}
	fs = flag.NewFlagSet("cport serve", flag.ContinueOnError)
	defineServeFlags(fs, new(serveConfig))
	source := make(map[string]string)
	fs.VisitAll(func(f *flag.Flag) { source[f.Name] = fromDefault })
	check := flag.NewFlagSet("cport serve", flag.ContinueOnError)
	defineServeFlags(check, new(serveConfig))
	if err := applyFile(fs, check, writeConfig(t, strings.Join(lines, "\n")), source); err != nil {
		t.Fatalf("the commented keys of %s: %v", example, err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if source[f.Name] == fromFile && f.DefValue != "" && f.Value.String() != f.DefValue {
			t.Errorf("%s: the commented %s gives %s; the default is %s", example, f.Name, f.Value, f.DefValue)
		}
	})
}

// TestNearestFlag: a near miss is told the flag it missed; a word far from
// every flag is not.
func TestNearestFlag(t *testing.T) {
	fs := flag.NewFlagSet("cport serve", flag.ContinueOnError)
	defineServeFlags(fs, new(serveConfig))
	for key, want := range map[string]string{
		"max-mesage":         "max-message",
		"MAX_MESSAGE":        "max-message",
		"CPORT_IDLE_TIMEOUT": "idle-timeout",
		"worker":             "workers",
		"--no-echo":          "no-echo",
		"colour":             "",
		"configs":            "", // config cannot be in the file
	} {
		if got := nearestFlag(fs, key); got != want {
			t.Errorf("nearestFlag(%q) = %q; want %q", key, got, want)
		}
	}
}

// TestServeConfigFileRuns: the server, as a process, runs with what its
// configuration file and the environment say, as its cport_info metric
// reports them.
func TestServeConfigFileRuns(t *testing.T) {
	path := writeConfig(t, `
framing = "line"
max-message = "1KiB"
send-queue = "64KiB"
workers = 3
`)
	t.Setenv("CPORT_SEND_QUEUE", "128KiB")
	_, _, base := startServerOps(t, "--config", path, "--framing", "frame")
	mfs := scrape(t, base)
	for name, want := range map[string]string{
		"framing":           "frame",  // the flag
		"max_message_bytes": "1024",   // the file
		"send_queue_bytes":  "131072", // the environment
		"workers":           "3",      // the file
	} {
		if got := infoLabel(mfs, name); got != want {
			t.Errorf("cport_info{%s=%q}; want %q (flag > env > file)", name, got, want)
		}
	}
}
