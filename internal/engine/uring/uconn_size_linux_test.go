package uring

import (
	"testing"
	"unsafe"
)

// TestUconnSize guards the size of a uconn, which every idle connection
// costs: 64 bytes, a size class of Go's allocator (the next is 80). The
// error a failed shutdown ends the receive with lives in the ring's
// recvErrs, not here.
func TestUconnSize(t *testing.T) {
	if sz := unsafe.Sizeof(uconn{}); sz > 64 {
		t.Errorf("uconn is %d bytes; want at most 64", sz)
	}
}
