//go:build unix

package main

import (
	"strings"
	"syscall"
	"testing"
)

// TestLoadTooManyClients: more clients than the open-files limit allows is a
// clear error that advises splitting them over processes.
func TestLoadTooManyClients(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 500000 {
		t.Skip("no open-files limit that a million clients would meet")
	}
	// With --framing, no probe of the server (there is none) comes first.
	code, _, errs := runLoadCmd(t, "load", "--clients", "1000000", "--framing", "frame", "--quiet")
	if code != 1 || !strings.Contains(errs, "RLIMIT_NOFILE") || !strings.Contains(errs, "split") {
		t.Errorf("a million clients: exit status %d, stderr %q; want 1 and advice to split", code, errs)
	}
}
