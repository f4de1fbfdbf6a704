package cport

import "cport.dev/cport/internal/engine"

// WithFaults returns c with f armed in its engine: the fault tests
// (conformance_fault_test.go) make the engine's system calls fail through it.
func WithFaults(c Config, f *engine.Faults) Config {
	c.faults = f
	return c
}
