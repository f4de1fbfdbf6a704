package cport

import (
	"testing"
	"unsafe"
)

// TestConnSize: an idle connection costs its Conn, among other things
// (the budget set for idle memory): 176 bytes, a size class of Go's
// allocator (the next is 192). The user data of SetValue took no room from
// it, the send batch's count and the peer's port moving into the flags'
// padding, the peer's address taking 16 bytes (its family is the local
// address's) and the backlog one word.
func TestConnSize(t *testing.T) {
	if sz := unsafe.Sizeof(Conn{}); sz > 176 {
		t.Errorf("Conn is %d bytes; want 176 at most", sz)
	}
}
