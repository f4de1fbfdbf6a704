//go:build !linux

package load

import (
	"fmt"
	"net"
	"runtime"
)

// readSockstat fails: /proc/net/sockstat is Linux's.
func readSockstat() (Sockstat, error) {
	return Sockstat{}, fmt.Errorf("the kernel's TCP counts are read on Linux only, not on %s", runtime.GOOS)
}

// peerState cannot read TCP_INFO here.
func peerState(net.Conn) (connState, bool) { return connState{}, false }

// setRcvBuf leaves the receive buffer as it is: the stalled and half-open
// clients shrink theirs on Linux only.
func setRcvBuf(fd uintptr, n int) error { return nil }

// processGone cannot tell.
func processGone(pid int) (bool, error) {
	return false, fmt.Errorf("process %d: whether it exited is read on Linux only, not on %s", pid, runtime.GOOS)
}

// terminate does not signal processes here.
func terminate(pid int) error {
	return fmt.Errorf("process %d: signals are sent on Linux only, not on %s", pid, runtime.GOOS)
}
