//go:build !linux && !windows

package cport

// osEngines is empty here: Go's net package is the engine.
var osEngines []engineInfo
