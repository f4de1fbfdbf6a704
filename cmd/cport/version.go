package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"cport.dev/cport"
)

// build is what the binary knows of its own build.
type build struct {
	version  string // the module's version: (devel) when built from a checkout
	revision string // the VCS revision, "+dirty" if modified; "" if unknown
	time     string // the revision's commit time (RFC 3339); "" if unknown
}

// readBuild reads the build information Go embeds in the binary.
func readBuild() build {
	b := build{version: "(unknown)"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.version = info.Main.Version
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.time":
			b.time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.revision != "" {
		b.revision += "+dirty"
	}
	return b
}

// runVersion prints the version of cport, its build, and its engines, to
// stdout.
func runVersion(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	printVersion(stdout)
	return nil
}

// printVersion writes what cport version says to w.
func printVersion(w io.Writer) {
	b := readBuild()
	fmt.Fprintf(w, "cport %s\n", b.version)
	if b.revision != "" {
		fmt.Fprintf(w, "revision: %s\n", b.revision)
	}
	if b.time != "" {
		fmt.Fprintf(w, "committed: %s\n", b.time)
	}
	fmt.Fprintf(w, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	names := cport.Backends()
	fmt.Fprintf(w, "engines: %s\n", strings.Join(names, ", "))
	auto := ""
	for _, name := range names {
		p, err := cport.Open(cport.Config{Backend: name})
		if err != nil {
			fmt.Fprintf(w, "  %s: unavailable here: %v\n", name, err)
			continue
		}
		p.Close()
		if auto == "" {
			auto = name
		}
		fmt.Fprintf(w, "  %s: available\n", name)
	}
	if auto != "" {
		fmt.Fprintf(w, "auto: %s\n", auto)
	}
}
