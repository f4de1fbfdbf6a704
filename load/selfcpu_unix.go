//go:build unix

package load

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// selfCPU returns the CPU time of every thread of the load process, from
// getrusage(RUSAGE_SELF).
func selfCPU() (selfUsage, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return selfUsage{}, fmt.Errorf("getrusage: %w", err)
	}
	rss := int64(ru.Maxrss)
	if runtime.GOOS != "darwin" && runtime.GOOS != "ios" { // kilobytes, not bytes
		rss *= 1024
	}
	return selfUsage{
		user:   time.Duration(ru.Utime.Nano()),
		system: time.Duration(ru.Stime.Nano()),
		maxRSS: rss,
	}, nil
}
