//go:build !windows

package cport_test

import "testing"

// TestWindowsSuite says where the iocp engine's tests run: they are built
// for Windows only, and .ci/windows-tests runs them (this package's, on the
// iocp engine, and internal/engine/iocp's) under Wine (wine64).
func TestWindowsSuite(t *testing.T) {
	t.Skip("Windows suite not run here: .ci/windows-tests runs the iocp engine's tests under Wine (wine64)")
}
