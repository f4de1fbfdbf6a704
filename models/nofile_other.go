//go:build !linux

package models

// openFilesLimit returns 0: unknown here (the experiment reads /proc, and
// runs on Linux only).
func openFilesLimit() uint64 { return 0 }
