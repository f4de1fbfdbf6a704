package models

import "syscall"

// openFilesLimit returns RLIMIT_NOFILE's soft limit, or 0 if unknown.
func openFilesLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	return rl.Cur
}
