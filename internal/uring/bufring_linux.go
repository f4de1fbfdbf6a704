package uring

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bufRingEntry mirrors struct io_uring_buf (16 bytes). In entry 0 the resv
// field is the ring tail (struct io_uring_buf_ring).
type bufRingEntry struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// bufReg mirrors struct io_uring_buf_reg, the argument of
// IORING_(UN)REGISTER_PBUF_RING.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	minLeft     uint32
	resv        [5]uint32
}

// tailWordOff is the offset of the aligned 32-bit word that holds
// bufs[0].bid (its first half) and io_uring_buf_ring.tail, a __u16 that
// overlays bufs[0].resv (its second half).
const tailWordOff = 12

// BufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19+;
// io_uring_register_buf_ring(3)): a group of equal-sized buffers the kernel
// picks from for requests with IOSQE_BUFFER_SELECT, such as
// PrepRecvMultishot.
//
// The ring is mmap'd memory, page aligned as the kernel requires. The
// buffers are one slab of the Go heap, which never moves its objects: the
// BufRing keeps it reachable while the group is registered, and a slice
// returned by Buf keeps it reachable after Close, so a caller may go on
// reading a buffer it holds when the ring goes away. No request that may
// select a buffer may be in flight when the ring is closed. A buffer named by a CQE (CQE.BufferID) belongs to the caller
// until it hands it back with Recycle (or Add and Publish); each buffer must
// be returned exactly once per use.
//
// A BufRing belongs to its Ring's owner and is not safe for concurrent use.
type BufRing struct {
	ring    *Ring
	mem     []byte // the io_uring_buf_ring
	bufMem  []byte // the buffers, bufSize bytes each
	entries []bufRingEntry
	base    uintptr // address of bufMem
	bufSize int
	mask    uint16
	tail    uint16 // local tail, published by Publish
	bgid    uint16
}

// RegisterBufRing allocates entries buffers of bufSize bytes, registers them
// as buffer group bgid, and makes them all available to the kernel. entries
// must be a power of two no larger than 32768. If the kernel refuses the
// registration the error wraps its errno (EEXIST for a group id in use,
// EINVAL for a bad size or before 5.19, ENOMEM).
func (r *Ring) RegisterBufRing(entries uint16, bgid uint16, bufSize int) (*BufRing, error) {
	return r.RegisterBufRingMem(entries, bgid, bufSize, nil)
}

// RegisterBufRingMem is RegisterBufRing with the buffers in mem, which must
// hold entries*bufSize bytes and stay valid until the group is released (by
// Close, or by the Ring's Close) and no buffer of it is in use: memory from
// outside the Go heap, such as an anonymous mmap, whose lifetime the caller
// manages, keeps a large slab from inflating the garbage collector's goal.
// A nil mem is RegisterBufRing.
func (r *Ring) RegisterBufRingMem(entries uint16, bgid uint16, bufSize int, mem []byte) (*BufRing, error) {
	if entries == 0 || entries&(entries-1) != 0 || uint32(entries) > maxEntries || bufSize <= 0 ||
		int64(bufSize) > 1<<31-1 {
		return nil, fmt.Errorf("io_uring buffer ring: %d entries of %d bytes: %w", entries, bufSize, unix.EINVAL)
	}
	if mem != nil && len(mem) < int(entries)*bufSize {
		return nil, fmt.Errorf("io_uring buffer ring: %d bytes of memory for %d buffers of %d: %w", len(mem), entries, bufSize, unix.EINVAL)
	}
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
	b := &BufRing{ring: r, bufSize: bufSize, mask: entries - 1, bgid: bgid}
	var err error
	// Anonymous mappings are page aligned, as the kernel requires of ring_addr.
	if b.mem, err = unix.Mmap(-1, 0, int(entries)*int(unsafe.Sizeof(bufRingEntry{})), prot, flags); err != nil {
		return nil, fmt.Errorf("mmap io_uring buffer ring: %w", err)
	}
	b.bufMem = mem
	if b.bufMem == nil {
		b.bufMem = make([]byte, int(entries)*bufSize)
	}
	b.entries = unsafe.Slice((*bufRingEntry)(unsafe.Pointer(&b.mem[0])), entries)
	b.base = uintptr(unsafe.Pointer(&b.bufMem[0]))

	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.mem[0]))), ringEntries: uint32(entries), bgid: bgid}
	if _, err := sysRegister(r.fd, IORING_REGISTER_PBUF_RING, unsafe.Pointer(&reg), 1); err != nil {
		unix.Munmap(b.mem)
		return nil, fmt.Errorf("io_uring_register(IORING_REGISTER_PBUF_RING, group %d): %w", bgid, err)
	}
	for i := range entries {
		b.Add(i)
	}
	b.Publish()
	r.bufRings = append(r.bufRings, b)
	return b, nil
}

// Group returns the buffer group id, for PrepRecvSelect and PrepRecvMultishot.
func (b *BufRing) Group() uint16 { return b.bgid }

// Len returns the number of buffers.
func (b *BufRing) Len() int { return len(b.entries) }

// BufSize returns the size of each buffer.
func (b *BufRing) BufSize() int { return b.bufSize }

// Buf returns buffer bid. After a CQE naming it, its first Res bytes hold the
// data received. The slice aliases memory unmapped by Close (or Ring.Close).
func (b *BufRing) Buf(bid uint16) []byte {
	off := int(bid) * b.bufSize
	return b.bufMem[off : off+b.bufSize : off+b.bufSize]
}

// Add stages buffer bid for return to the kernel; it becomes visible at the
// next Publish.
func (b *BufRing) Add(bid uint16) {
	if int(bid) >= len(b.entries) {
		panic("uring: buffer id out of range")
	}
	e := &b.entries[b.tail&b.mask]
	// Only addr, len and bid: entry 0's resv is the tail.
	e.addr = uint64(b.base + uintptr(bid)*uintptr(b.bufSize))
	e.len = uint32(b.bufSize)
	e.bid = bid
	b.tail++
}

// Publish makes the buffers staged by Add available to the kernel.
func (b *BufRing) Publish() {
	// Release-store the 16-bit tail (the kernel reads it with
	// smp_load_acquire). sync/atomic has no 16-bit store, so store the
	// aligned word that also holds entries[0].bid, which only this side
	// writes and which therefore is rebuilt unchanged.
	var w [4]byte
	binary.NativeEndian.PutUint16(w[0:2], b.entries[0].bid)
	binary.NativeEndian.PutUint16(w[2:4], b.tail)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b.mem[tailWordOff])), binary.NativeEndian.Uint32(w[:]))
}

// Recycle returns buffer bid to the kernel at once (Add then Publish).
func (b *BufRing) Recycle(bid uint16) {
	b.Add(bid)
	b.Publish()
}

// Close unregisters the buffer group and unmaps its memory. No request that
// may select from the group may still be in flight: cancel such requests
// and reap their final CQEs first. On a SINGLE_ISSUER ring it must run on
// the issuer thread, like every io_uring_register(2) call (the kernel
// answers EEXIST elsewhere). If unregistering fails the memory stays mapped,
// since the kernel may still use it, until Ring.Close releases it. Calling
// Close again is a no-op.
func (b *BufRing) Close() error {
	if b.ring == nil {
		return nil
	}
	reg := bufReg{bgid: b.bgid}
	if _, err := sysRegister(b.ring.fd, IORING_UNREGISTER_PBUF_RING, unsafe.Pointer(&reg), 1); err != nil {
		return fmt.Errorf("io_uring_register(IORING_UNREGISTER_PBUF_RING, group %d): %w", b.bgid, err)
	}
	return b.release()
}

// release detaches b from its ring and unmaps its memory.
func (b *BufRing) release() error {
	r := b.ring
	if i := slices.Index(r.bufRings, b); i >= 0 {
		r.bufRings = slices.Delete(r.bufRings, i, i+1)
	}
	b.ring = nil
	err := unix.Munmap(b.mem)
	b.mem, b.bufMem, b.entries = nil, nil, nil
	return err
}
