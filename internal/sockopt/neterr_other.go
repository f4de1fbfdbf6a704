//go:build !windows

package sockopt

// NetError is the identity where Go's net package reports POSIX errors
// (see neterr_windows.go).
func NetError(err error) error { return err }
