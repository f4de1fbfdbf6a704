//go:build !linux && !windows

package cport_test

import "testing"

// fullListenerOS has no way here to make a listener drop connects.
func fullListenerOS(t *testing.T) (string, bool) { return "", false }
