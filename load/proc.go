package load

import "time"

// A procSample is what the operating system says about a process at one
// moment: /proc on Linux (proc_linux.go), the process and tool-help APIs on
// Windows (proc_windows.go). sampleProc(pid int) (procSample, error) takes
// one; it fails on other systems (proc_other.go).
type procSample struct {
	user, system time.Duration // CPU time since the process started
	rss          int64         // resident set size (Windows: working set), bytes
	threads      int
}

// cpu returns the CPU time the process has used, user and system.
func (s procSample) cpu() time.Duration { return s.user + s.system }
