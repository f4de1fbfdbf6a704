//go:build !linux && !windows

package load

import (
	"fmt"
	"runtime"
)

// sampleProc fails: processes are sampled on Linux and Windows only.
func sampleProc(pid int) (procSample, error) {
	return procSample{}, fmt.Errorf("process %d: --server-pid is supported on Linux and Windows only, not on %s", pid, runtime.GOOS)
}

// acceptQueued returns -1: accept queues are read on Linux only.
func acceptQueued(port int) int { return -1 }
