//go:build !unix

package load

// openFilesLimit reports that this system has no RLIMIT_NOFILE to read.
func openFilesLimit() (uint64, bool) { return 0, false }
