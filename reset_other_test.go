//go:build !windows

package cport_test

import (
	"errors"
	"syscall"
	"testing"
)

// wantReset fails t unless err, what a client's read (Go's net) ended with,
// is a reset (see reset_windows_test.go for Windows and Wine).
func wantReset(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: %v; want a reset", what, err)
	}
}
