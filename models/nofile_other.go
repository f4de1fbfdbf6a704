//go:build !unix

package models

// openFilesLimit returns 0: unknown here.
func openFilesLimit() uint64 { return 0 }
