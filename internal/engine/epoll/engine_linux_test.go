package epoll

import (
	"testing"
	"unsafe"
)

// TestConnSize guards the per-connection state: an idle connection costs
// it, and the goal is under 1 KiB per idle connection in all.
func TestConnSize(t *testing.T) {
	if sz := unsafe.Sizeof(conn{}); sz > 48 {
		t.Errorf("conn is %d bytes; keep it within the 48-byte size class", sz)
	}
}
