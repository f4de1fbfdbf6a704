//go:build !unix && !windows

package load

import (
	"fmt"
	"runtime"
)

// selfCPU fails: the load process measures itself on Unix and Windows only.
func selfCPU() (selfUsage, error) {
	return selfUsage{}, fmt.Errorf("the load process's CPU time is measured on Unix and Windows only, not on %s", runtime.GOOS)
}
