package load

import "os"

// selfCPU returns the CPU time of the load process, from the process API
// (sampleProc); the peak resident set size is left unknown.
func selfCPU() (selfUsage, error) {
	s, err := sampleProc(os.Getpid())
	return selfUsage{user: s.user, system: s.system}, err
}
