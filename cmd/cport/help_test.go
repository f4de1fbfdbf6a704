package main

import (
	"flag"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// commandPaths returns every command and subcommand, hidden ones too, as
// the words that name it (load, idle).
func commandPaths() [][]string {
	var paths [][]string
	var walk func(prefix []string, cs []*command)
	walk = func(prefix []string, cs []*command) {
		for _, c := range cs {
			p := append(prefix[:len(prefix):len(prefix)], c.name)
			paths = append(paths, p)
			walk(p, c.subs)
		}
	}
	walk(nil, commands)
	return paths
}

// Go's flag package's own placeholders, which say nothing of a value.
var vaguePlaceholder = regexp.MustCompile(`(?m)^  --[a-z0-9-]+ (value|string|int|int64|uint|uint64|float)$`)

// TestHelpEveryCommand: cport help <command> [<subcommand>], -h and --help
// describe every command and subcommand, its flags with two dashes and a
// placeholder that says what the value is.
func TestHelpEveryCommand(t *testing.T) {
	for _, path := range commandPaths() {
		name := "cport " + strings.Join(path, " ")
		code, help, errs := runCmd(append([]string{"help"}, path...)...)
		if code != 0 || errs != "" || !strings.HasPrefix(help, "Usage: "+name+" ") {
			t.Errorf("cport help %s: status %d, stderr %q, stdout %q; want 0 and the usage of %s", strings.Join(path, " "), code, errs, help, name)
			continue
		}
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := runCmd(append(path, h)...)
			if code != 0 || out+errs != help {
				t.Errorf("%s %s: status %d, output %q; want 0 and what cport help says", name, h, code, out+errs)
			}
		}
		if m := regexp.MustCompile(`(?m)^  -[^-].*$`).FindString(help); m != "" {
			t.Errorf("%s -h lists a flag with one dash: %q", name, m)
		}
		if m := vaguePlaceholder.FindString(help); m != "" {
			t.Errorf("%s -h gives a flag a placeholder that says nothing: %q", name, m)
		}
	}
	for _, args := range [][]string{{"help", "nosuch"}, {"help", "load", "nosuch"}, {"help", "serve", "idle"}} {
		code, out, errs := runCmd(args...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, fmt.Sprintf("cport help: unknown command %q\n", strings.Join(args[1:], " "))) {
			t.Errorf("cport %s: status %d, stdout %q, stderr %q; want 2 and unknown command", strings.Join(args, " "), code, out, errs)
		}
	}
}

// TestEveryFlagChecksItsRange: every flag of every command that takes a
// number, a size, a duration or one of a few words rejects a value out of
// its range with status 2 and one line: "cport <command>: --<flag>: must
// be …, got <value>". A bad value taken for a good one makes the command
// run against an address where nothing can happen: it then fails with
// status 1, or reports usage of another kind.
func TestEveryFlagChecksItsRange(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := closed.Addr().String()
	closed.Close()
	safe := map[string][]string{
		"serve":        {"--addr", busyAddr(t)},
		"client":       {"--addr", nowhere},
		"models":       {"--models", "nosuch"},
		"models serve": {"--addr", "256.0.0.1:0"},
	}
	checked := 0
	defer func() {
		if checked < 90 {
			t.Errorf("%d bad values tried; want every flag's, 90 at least", checked)
		}
	}()
	for _, path := range commandPaths() {
		name := strings.Join(path, " ")
		c, _ := find(path)
		fs, err := flagsOf("cport "+name, c[len(c)-1])
		if err != nil {
			t.Fatal(err)
		}
		prefix := safe[name]
		if prefix == nil && path[0] == "load" {
			prefix = []string{"--addr", nowhere, "--framing", "frame"}
		}
		fs.VisitAll(func(f *flag.Flag) {
			var bad []string
			switch v := f.Value.(type) {
			case *intFlag:
				bad = append(bad, strconv.FormatInt(v.min-1, 10))
				if v.max != noMax {
					bad = append(bad, strconv.FormatInt(v.max+1, 10))
				}
			case *sizeFlag[int]:
				bad = append(bad, strconv.FormatInt(v.min-1, 10))
				if v.max != noMax {
					bad = append(bad, strconv.FormatInt(v.max+1, 10))
				}
			case *sizeFlag[int64]:
				bad = append(bad, strconv.FormatInt(v.min-1, 10))
				if v.max != noMax {
					bad = append(bad, strconv.FormatInt(v.max+1, 10))
				}
			case *durationFlag:
				bad = append(bad, "-1s")
				if v.positive {
					bad = append(bad, "0s")
				}
			case *floatFlag:
				bad = append(bad, "-1", "Inf")
				if v.positive {
					bad = append(bad, "0")
				}
			case *framingFlag, *choiceFlag, *backendFlag:
				bad = append(bad, "nosuch")
			default:
				if isBool(f) || fmt.Sprintf("%T", f.Value) == "*flag.stringValue" {
					return // any text: an address, a file, a list the command checks
				}
				t.Errorf("cport %s --%s is a %T, which checks no range", name, f.Name, f.Value)
				return
			}
			for _, b := range bad {
				checked++
				args := append(append(append([]string(nil), path...), prefix...), "--"+f.Name, b)
				code, out, errs := runCmd(args...)
				want := regexp.MustCompile(`^cport ` + regexp.QuoteMeta(name) + `: --` + regexp.QuoteMeta(f.Name) + `: must be .+, got ` + regexp.QuoteMeta(b) + `( \(.*\))?\n$`)
				if code != 2 || out != "" || !want.MatchString(errs) {
					t.Errorf("cport %s: status %d, stdout %q, stderr %q; want 2 and cport %s: --%s: must be …, got %s",
						strings.Join(args, " "), code, out, errs, name, f.Name, b)
				}
			}
		})
	}
}
