//go:build !windows

package cport

// netError is the identity where Go's net package reports POSIX errors.
func netError(err error) error { return err }
