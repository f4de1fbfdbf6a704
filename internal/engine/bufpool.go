package engine

import (
	"sync"
	"time"
)

// BufPool lends receive buffers of one size, for the engines that read
// into memory of their own (the kernel-ring engines have provided buffers
// instead). Buffers are taken only when data is about to be read, so idle
// connections hold none.
type BufPool struct {
	size int
	pool sync.Pool
}

// NewBufPool returns a pool of buffers of size bytes.
func NewBufPool(size int) *BufPool { return &BufPool{size: size} }

// Get returns a buffer.
func (p *BufPool) Get() *Buf {
	if b, _ := p.pool.Get().(*Buf); b != nil {
		return b
	}
	return &Buf{B: make([]byte, p.size)}
}

// Put returns a buffer to the pool.
func (p *BufPool) Put(b *Buf) { p.pool.Put(b) }

// NextAcceptPause is every engine's back-off after an accept failed with a
// shortage (EMFILE, ENFILE, ENOBUFS) or another error that leaves the
// listener usable: the first pause is 5 ms, each next one twice the last,
// up to a second; a connection accepted resets it to zero. Accepting
// again too soon would spin the CPU while descriptors are short; too late,
// and the clients wait once they are back.
func NextAcceptPause(last time.Duration) time.Duration {
	return min(max(2*last, 5*time.Millisecond), time.Second)
}
