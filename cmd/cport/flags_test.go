package main

import (
	"flag"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"cport.dev/cport/chat"
)

// setFlag defines one flag with define on a new flag set, sets it to s, and
// returns the flag's String and the error of Set ("" if none).
func setFlag(define func(fs *flag.FlagSet), s string) (string, string) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	var f *flag.Flag
	fs.VisitAll(func(g *flag.Flag) { f = g })
	err := f.Value.Set(s)
	if v, ok := f.Value.(failer); !ok || v.failed() != err {
		return f.Value.String(), "the value does not remember the error of its Set"
	}
	if err != nil {
		return f.Value.String(), err.Error()
	}
	return f.Value.String(), ""
}

func TestSizeFlag(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		in      string
		want    int64  // if no error
		wantErr string // in the error
	}{
		{"65536", 65536, ""},
		{"64KiB", 64 << 10, ""},
		{"4MiB", 4 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"1.5MB", 1500000, ""},
		{"64KB", 64000, ""},
		{"1kB", 1000, ""},
		{"1.5KiB", 1536, ""},
		{"2GB", 2e9, ""},
		{"1TiB", 1 << 40, ""},
		{"1TB", 1e12, ""},
		{"7B", 7, ""},
		{"7 B", 7, ""},
		{"64 KiB", 64 << 10, ""},
		{"0.5KiB", 512, ""},
		{"1.000KB", 1000, ""},
		{"0", 0, ""},
		{"000012", 12, ""},

		{"-5", 0, "must be between 0 and 2TiB, got -5"},
		{"-1KiB", 0, "must be between 0 and 2TiB, got -1KiB"},
		{"3TiB", 0, "must be between 0 and 2TiB, got 3TiB"},
		{"99999999999999999999999999GiB", 0, "must be between 0 and 2TiB, got 99999999999999999999999999GiB"},
		{"9223372036854775808", 0, "must be between 0 and 2TiB"},
		{"1.5", 0, "must be a whole number of bytes, got 1.5"},
		{"0.5B", 0, "must be a whole number of bytes"},
		{"1.0001KB", 0, "must be a whole number of bytes"},
		{"1.1KiB", 0, "must be a whole number of bytes"},
		{"4mb", 0, `must be a size in B, kB, MB, GB, TB, KiB, MiB, GiB or TiB, got "4mb"`},
		{"4Mb", 0, "must be a size in B"},
		{"4MIB", 0, "must be a size in B"},
		{"4mib", 0, "must be a size in B"},
		{"4M", 0, "must be a size in B"},
		{"4K", 0, "must be a size in B"},
		{"4KIB", 0, "must be a size in B"},
		{"4b", 0, "must be a size in B"},
		{"", 0, `must be a size such as 65536, 64KiB, 4MiB or 1.5MB, got ""`},
		{"KiB", 0, "must be a size such as"},
		{"1e6", 0, "must be a size such as"},
		{"0x10", 0, "must be a size such as"},
		{"+5", 0, "must be a size such as"},
		{"1.", 0, "must be a size such as"},
		{".5KiB", 0, "must be a size such as"},
		{"1,5MB", 0, "must be a size such as"},
		{"1  KiB", 0, "must be a size such as"},
		{" 1KiB", 0, "must be a size such as"},
		{"1KiB ", 0, "must be a size such as"},
		{"1/2KiB", 0, "must be a size such as"},
		{"none", 0, "must be a size such as"},
		{"NaN", 0, "must be a size such as"},
	} {
		var n int64 = -7
		got, err := setFlag(func(fs *flag.FlagSet) { sizeVar(fs, &n, "size", -7, 0, 2<<40, false, "") }, tt.in)
		switch {
		case tt.wantErr == "" && (err != "" || n != tt.want):
			t.Errorf("Set(%q): %d, error %q; want %d", tt.in, n, err, tt.want)
		case tt.wantErr != "" && (!strings.Contains(err, tt.wantErr) || n != -7):
			t.Errorf("Set(%q): %d (String %s), error %q; want the value unchanged and an error with %q", tt.in, n, got, err, tt.wantErr)
		}
	}

	// Bounds, the message that says them, and none.
	for _, tt := range []struct {
		min, max int64
		none     bool
		in       string
		want     int // if no error
		wantErr  string
	}{
		{1, 16 * mib, false, "16MiB", 16 * mib, ""},
		{1, 16 * mib, false, "1B", 1, ""},
		{1, 16 * mib, false, "0", 0, "must be between 1B and 16MiB, got 0"},
		{1, 16 * mib, false, "16777217", 0, "must be between 1B and 16MiB, got 16777217"},
		{1, 16 * mib, false, "16.5MiB", 0, "must be between 1B and 16MiB, got 16.5MiB"},
		{1, 16 * mib, false, "none", 0, "must be a size such as"},
		{1 << 10, noMax, false, "1023", 0, "must be 1KiB or more, got 1023"},
		{1 << 10, noMax, false, "9223372036854775807", math.MaxInt, ""},
		{1 << 10, noMax, false, "9223372036854775808", 0, "must be 1KiB or more, got 9223372036854775808"},
		{0, 1 << 30, true, "none", -1, ""},
		{0, 1 << 30, true, "-1", 0, "must be between 0 and 1GiB, or none, got -1"},
		{0, 1 << 30, true, "0", 0, ""},
		{41, 1 << 20, false, "40", 0, "must be between 41B and 1MiB, got 40"},
	} {
		n := 5
		_, err := setFlag(func(fs *flag.FlagSet) { sizeVar(fs, &n, "size", 5, tt.min, tt.max, tt.none, "") }, tt.in)
		switch {
		case tt.wantErr == "" && (err != "" || n != tt.want):
			t.Errorf("range %d..%d: Set(%q): %d, error %q; want %d", tt.min, tt.max, tt.in, n, err, tt.want)
		case tt.wantErr != "" && (!strings.Contains(err, tt.wantErr) || n != 5):
			t.Errorf("range %d..%d: Set(%q): %d, error %q; want 5 unchanged and %q", tt.min, tt.max, tt.in, n, err, tt.wantErr)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 1: "1B", 41: "41B", 1000: "1000B", 1024: "1KiB", 64 << 10: "64KiB", 65540: "65540B", 1536: "1536B",
		4 << 20: "4MiB", 16 << 20: "16MiB", 1 << 30: "1GiB", 256 << 20: "256MiB", 3 << 40: "3TiB", -1: "-1B",
	} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
		if n > 0 {
			if back, err := parseSize(formatSize(n)); err != nil || !back.IsInt() || back.Num().Int64() != n {
				t.Errorf("parseSize(formatSize(%d)) = %v, %v; want %d", n, back, err, n)
			}
		}
	}
}

func TestIntFlag(t *testing.T) {
	for _, tt := range []struct {
		min, max int64
		in       string
		want     int
		wantErr  string
	}{
		{0, 4096, "0", 0, ""},
		{0, 4096, "4096", 4096, ""},
		{0, 4096, "0x10", 16, ""},
		{0, 4096, "1_000", 1000, ""},
		{0, 4096, "-1", 0, "must be between 0 and 4096, got -1"},
		{0, 4096, "4097", 0, "must be between 0 and 4096, got 4097"},
		{0, 4096, "99999999999999999999", 0, "must be between 0 and 4096, got 99999999999999999999"},
		{0, noMax, "99999999999999999999", 0, "must be 0 or more, got 99999999999999999999"},
		{0, noMax, "-3", 0, "must be 0 or more, got -3"},
		{1, noMax, "0", 0, "must be 1 or more, got 0"},
		{0, 4096, "2.5", 0, `must be a whole number, got "2.5"`},
		{0, 4096, "many", 0, `must be a whole number, got "many"`},
		{0, 4096, "", 0, `must be a whole number, got ""`},
	} {
		n := 7
		_, err := setFlag(func(fs *flag.FlagSet) { intVar(fs, &n, "n", 7, tt.min, tt.max, "") }, tt.in)
		switch {
		case tt.wantErr == "" && (err != "" || n != tt.want):
			t.Errorf("range %d..%d: Set(%q): %d, error %q; want %d", tt.min, tt.max, tt.in, n, err, tt.want)
		case tt.wantErr != "" && (err != tt.wantErr || n != 7):
			t.Errorf("range %d..%d: Set(%q): %d, error %q; want 7 unchanged and %q", tt.min, tt.max, tt.in, n, err, tt.wantErr)
		}
	}
}

func TestFloatFlag(t *testing.T) {
	for _, tt := range []struct {
		positive bool
		in       string
		want     float64
		wantErr  string
	}{
		{false, "0", 0, ""},
		{false, "100.5", 100.5, ""},
		{false, "1e3", 1000, ""},
		{true, "0.001", 0.001, ""},
		{false, "-1", 0, "must be 0 or more, got -1"},
		{false, "-0.5", 0, "must be 0 or more, got -0.5"},
		{true, "0", 0, "must be more than 0, got 0"},
		{false, "NaN", 0, "must be a finite number, got NaN"},
		{false, "Inf", 0, "must be a finite number, got Inf"},
		{false, "1e999", 0, "must be a finite number, got 1e999"},
		{false, "fast", 0, `must be a number, got "fast"`},
	} {
		v := 7.0
		_, err := setFlag(func(fs *flag.FlagSet) { floatVar(fs, &v, "rate", 7, tt.positive, "") }, tt.in)
		switch {
		case tt.wantErr == "" && (err != "" || v != tt.want):
			t.Errorf("positive %v: Set(%q): %v, error %q; want %v", tt.positive, tt.in, v, err, tt.want)
		case tt.wantErr != "" && (err != tt.wantErr || v != 7):
			t.Errorf("positive %v: Set(%q): %v, error %q; want 7 unchanged and %q", tt.positive, tt.in, v, err, tt.wantErr)
		}
	}
}

func TestDurationFlag(t *testing.T) {
	for _, tt := range []struct {
		positive bool
		in       string
		want     time.Duration
		wantErr  string
	}{
		{false, "0", 0, ""},
		{false, "0s", 0, ""},
		{false, "1m30s", 90 * time.Second, ""},
		{true, "1ns", 1, ""},
		{false, "-1s", 0, "must be 0 or more, got -1s"},
		{true, "-1s", 0, "must be more than 0, got -1s"},
		{true, "0", 0, "must be more than 0, got 0"},
		{false, "5", 0, `must be a duration such as 2s, 500ms or 1m30s, got "5"`},
		{false, "soon", 0, `must be a duration such as 2s, 500ms or 1m30s, got "soon"`},
	} {
		d := 7 * time.Second
		_, err := setFlag(func(fs *flag.FlagSet) { durationVar(fs, &d, "d", 7*time.Second, tt.positive, "") }, tt.in)
		switch {
		case tt.wantErr == "" && (err != "" || d != tt.want):
			t.Errorf("positive %v: Set(%q): %v, error %q; want %v", tt.positive, tt.in, d, err, tt.want)
		case tt.wantErr != "" && (err != tt.wantErr || d != 7*time.Second):
			t.Errorf("positive %v: Set(%q): %v, error %q; want 7s unchanged and %q", tt.positive, tt.in, d, err, tt.wantErr)
		}
	}
}

func TestFramingFlag(t *testing.T) {
	for _, tt := range []struct {
		valid   []chat.Framing
		in      string
		want    chat.Framing
		wantErr string
	}{
		{[]chat.Framing{chat.Raw, chat.Line, chat.Frame}, "line", chat.Line, ""},
		{[]chat.Framing{chat.Raw, chat.Line, chat.Frame}, "bogus", 0, "must be raw, line or frame, got bogus"},
		{[]chat.Framing{chat.Frame, chat.Line}, "frame", chat.Frame, ""},
		{[]chat.Framing{chat.Frame, chat.Line}, "raw", 0, "must be frame or line, got raw"},
	} {
		f := chat.Raw
		_, err := setFlag(func(fs *flag.FlagSet) { framingVar(fs, &f, "framing", chat.Raw, tt.valid, "") }, tt.in)
		switch {
		case tt.wantErr == "" && (err != "" || f != tt.want):
			t.Errorf("Set(%q): %v, error %q; want %v", tt.in, f, err, tt.want)
		case tt.wantErr != "" && (err != tt.wantErr || f != chat.Raw):
			t.Errorf("Set(%q): %v, error %q; want raw unchanged and %q", tt.in, f, err, tt.wantErr)
		}
	}
}

// TestFlagDefaults checks how help shows each kind's default: with units,
// and nothing for a zero.
func TestFlagDefaults(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var (
		size, zeroSize, none int
		n, zeroN             int
		rate, zeroRate       float64
		d, zeroD             time.Duration
		framing              chat.Framing
	)
	sizeVar(fs, &size, "size", 64<<10, 1, noMax, false, "a `size`")
	sizeVar(fs, &zeroSize, "zero-size", 0, 0, noMax, false, "a `size`")
	sizeVar(fs, &none, "none", -1, 0, noMax, true, "a `size`")
	intVar(fs, &n, "n", 1024, 0, noMax, "a `number`")
	intVar(fs, &zeroN, "zero-n", 0, 0, noMax, "a `number`")
	floatVar(fs, &rate, "rate", 200, false, "a `rate`")
	floatVar(fs, &zeroRate, "zero-rate", 0, false, "a `rate`")
	durationVar(fs, &d, "d", 5*time.Second, false, "a `duration`")
	durationVar(fs, &zeroD, "zero-d", 0, false, "a `duration`")
	framingVar(fs, &framing, "framing", chat.Frame, []chat.Framing{chat.Frame}, "a `framing`")
	var help strings.Builder
	printFlags(&help, fs)
	checkFlags(t, help.String(), []struct{ name, def string }{
		{"size", "a size (default 64KiB)"},
		{"none", "(default none)"},
		{"n", "(default 1024)"},
		{"rate", "(default 200)"},
		{"d", "(default 5s)"},
		{"framing", "(default frame)"},
	})
	for _, line := range strings.Split(help.String(), "\n") {
		if strings.Contains(line, "default") && !strings.Contains(line, "(default 64KiB)") && !strings.Contains(line, "(default none)") &&
			!strings.Contains(line, "(default 1024)") && !strings.Contains(line, "(default 200)") &&
			!strings.Contains(line, "(default 5s)") && !strings.Contains(line, "(default frame)") {
			t.Errorf("help shows a default for a zero: %q", line)
		}
		if strings.Contains(line, "panic") {
			t.Errorf("help: %q", line)
		}
	}
	for _, name := range []string{"size", "zero-size", "none", "n", "zero-n", "rate", "zero-rate", "d", "zero-d", "framing"} {
		if !strings.Contains(help.String(), "  --"+name+" ") {
			t.Errorf("help names no placeholder for --%s:\n%s", name, help.String())
		}
	}
}
