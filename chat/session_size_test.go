package chat

import (
	"testing"
	"unsafe"
)

// TestSessionSize guards the size of a session, which every idle client
// costs: 176 bytes, a size class of Go's allocator (the next is 192).
func TestSessionSize(t *testing.T) {
	if sz := unsafe.Sizeof(session{}); sz > 128 {
		t.Errorf("session is %d bytes; want at most 128", sz)
	}
}
