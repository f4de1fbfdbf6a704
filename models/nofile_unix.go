//go:build unix

package models

import "syscall"

// openFilesLimit returns RLIMIT_NOFILE's soft limit, or 0 if unknown.
func openFilesLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil || rl.Cur < 0 {
		return 0
	}
	return uint64(rl.Cur)
}
