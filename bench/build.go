package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// dirs locates the two modules.
type dirs struct {
	root  string // module cport.dev/cport
	bench string // module cport.dev/cport/bench
}

// findDirs asks the go command where the bench module and the module it
// replaces cport.dev/cport with are.
func findDirs() (dirs, error) {
	var d dirs
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return d, fmt.Errorf("go list -m: %v (run from the bench directory)", err)
	}
	d.bench = strings.TrimSpace(string(out))
	out, err = exec.Command("go", "list", "-m", "-f", "{{with .Replace}}{{.Dir}}{{else}}{{.Dir}}{{end}}", "cport.dev/cport").Output()
	if err != nil {
		return d, fmt.Errorf("go list -m cport.dev/cport: %v", err)
	}
	d.root = strings.TrimSpace(string(out))
	if !filepath.IsAbs(d.root) {
		d.root = filepath.Join(d.bench, d.root)
	}
	return d, nil
}

// binaries are the programs a run uses.
type binaries struct {
	cport     string
	netpeer   string
	gnetpeer  string
	nbiopeer  string
	cportecho string
	wspeer    string
}

// build builds cport (in its own module, with its own go.sum) and the
// peers into dir.
func build(ctx context.Context, d dirs, dir string) (binaries, error) {
	b := binaries{
		cport:     filepath.Join(dir, "cport"),
		netpeer:   filepath.Join(dir, "netpeer"),
		gnetpeer:  filepath.Join(dir, "gnetpeer"),
		nbiopeer:  filepath.Join(dir, "nbiopeer"),
		cportecho: filepath.Join(dir, "cportecho"),
		wspeer:    filepath.Join(dir, "wspeer"),
	}
	progress("building cport (%s) and the peers", d.root)
	if err := goBuild(ctx, d.root, "-o", b.cport, "cport.dev/cport/cmd/cport"); err != nil {
		return b, err
	}
	err := goBuild(ctx, d.bench, "-o", dir+string(filepath.Separator),
		"./peers/netpeer", "./peers/gnetpeer", "./peers/nbiopeer", "./peers/cportecho", "./peers/wspeer")
	return b, err
}

func goBuild(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out.String())
	}
	return nil
}
