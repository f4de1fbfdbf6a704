package chat

import (
	"testing"
	"unsafe"
)

// TestSessionSize guards the size of a session, which every idle client
// costs: 112 bytes, a size class of Go's allocator (the next is 128), its
// splitter keeping neither the limit of its messages (the server's) nor
// its sticky error as an interface; a sender's flow control is a
// sessionFlow of its own, 48 bytes, another.
func TestSessionSize(t *testing.T) {
	if sz := unsafe.Sizeof(session{}); sz > 112 {
		t.Errorf("session is %d bytes; want at most 112", sz)
	}
	if sz := unsafe.Sizeof(sessionFlow{}); sz > 48 {
		t.Errorf("sessionFlow is %d bytes; want at most 48", sz)
	}
}
