package uring

import (
	"testing"
	"unsafe"
)

// TestUconnSize guards the size of a uconn, which every idle connection
// costs: 48 bytes, a size class of Go's allocator (the next is 64). The
// loop's flags are the bits of one uconnFlags, not a bool each, and the
// error a failed shutdown ends the receive with lives in the ring's
// recvErrs, not here.
func TestUconnSize(t *testing.T) {
	if sz := unsafe.Sizeof(uconn{}); sz > 48 {
		t.Errorf("uconn is %d bytes; want at most 48, the allocator's size class below 64", sz)
	}
}
