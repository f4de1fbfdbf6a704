//go:build !windows

package chat

// resetSeenAsEOF says a reader may see a peer's reset as the end of the
// stream: never here (see reset_windows_test.go).
const resetSeenAsEOF = false
