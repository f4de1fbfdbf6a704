package cport

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// A Msg is a reference-counted message buffer: one Msg serves a whole
// fan-out, each send holding a reference until its bytes are written.
//
// NewMsg returns a Msg with one reference, the caller's. Conn.Send and
// Conn.SendQuiet take a reference of their own, so the caller releases its
// reference whenever it is done, typically right after the last Send. When
// the last reference is released the buffer goes back to a pool: touching a
// Msg after releasing one's reference is a bug, as is releasing twice.
type Msg struct {
	b     []byte
	refs  atomic.Int32
	class int8 // index into msgPools, or -1 for a buffer the pool does not own
}

// Message sizes pooled: powers of two from 64 B to 1 MiB.
const (
	msgMinShift = 6
	msgMaxShift = 20
)

var msgPools [msgMaxShift - msgMinShift + 1]sync.Pool

// NewMsg returns a message of n bytes (contents unspecified) holding one
// reference.
func NewMsg(n int) *Msg {
	class := msgClass(n)
	if class < 0 {
		m := &Msg{b: make([]byte, n), class: -1}
		m.refs.Store(1)
		return m
	}
	m, _ := msgPools[class].Get().(*Msg)
	if m == nil {
		m = &Msg{b: make([]byte, 1<<(class+msgMinShift)), class: int8(class)}
	}
	m.b = m.b[:n]
	m.refs.Store(1)
	return m
}

// MsgOf returns a message holding a copy of b, with one reference.
func MsgOf(b []byte) *Msg {
	m := NewMsg(len(b))
	copy(m.b, b)
	return m
}

// msgClass returns the pool class of an n-byte message, or -1 if too large.
func msgClass(n int) int {
	if n <= 1<<msgMinShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > msgMaxShift {
		return -1
	}
	return shift - msgMinShift
}

// Bytes returns the message's bytes. They may be written until the first
// Send; after that the message is shared and must not change.
func (m *Msg) Bytes() []byte { return m.b }

// Len returns the message's length.
func (m *Msg) Len() int { return len(m.b) }

// Ref adds a reference.
func (m *Msg) Ref() { m.refs.Add(1) }

// Refs returns the references held now: one for each send of the message
// not yet written, and one for each holder that has not released it. A
// sender that keeps its own reference sees, as Refs minus one, how many
// clients are still to be written the message.
func (m *Msg) Refs() int { return int(m.refs.Load()) }

// Release drops a reference; the last one returns the buffer to the pool.
func (m *Msg) Release() {
	switch n := m.refs.Add(-1); {
	case n > 0:
	case n == 0:
		if m.class >= 0 {
			msgPools[m.class].Put(m)
		}
	default:
		panic("cport: Msg released more often than referenced")
	}
}
