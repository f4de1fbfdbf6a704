package main

import (
	"math"

	"golang.org/x/sys/unix"
)

// raiseFileLimit raises the soft open-files limit to the hard one ("ulimit
// -n" as far as it goes without privileges to raise the hard limit): this
// process and every process it starts, servers and load processes, then
// hold that many descriptors. (Go raises its own soft limit at start but
// gives children the original one back unless the program sets it
// explicitly, as here.) It returns the limit in force.
func raiseFileLimit() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	// Set it even when Getrlimit shows it raised already: that may be the
	// runtime's doing, which children would not inherit.
	want := unix.Rlimit{Cur: lim.Max, Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
		lim = want
	}
	if lim.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(lim.Cur)
}
