package cport

import (
	"testing"
	"unsafe"
)

// TestConnSize: an idle connection costs its Conn, among other things
// (the budget set for idle memory): the user data of SetValue took no room from it, the send
// batch's count moving into the flags' padding.
func TestConnSize(t *testing.T) {
	if sz := unsafe.Sizeof(Conn{}); sz > 224 {
		t.Errorf("Conn is %d bytes; want 224 at most", sz)
	}
}
