package chat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// Framing is how a byte stream is cut into messages.
type Framing uint8

const (
	Raw   Framing = iota // whatever one read returned
	Line                 // up to and including '\n'
	Frame                // 4-byte big-endian length, then that many bytes
)

var framingNames = [...]string{Raw: "raw", Line: "line", Frame: "frame"}

// ParseFraming returns the Framing named s: "raw", "line" or "frame".
func ParseFraming(s string) (Framing, error) {
	for f, name := range framingNames {
		if s == name {
			return Framing(f), nil
		}
	}
	return 0, fmt.Errorf("chat: unknown framing %q (valid: %s)", s, strings.Join(framingNames[:], ", "))
}

// String returns the name that ParseFraming accepts.
func (f Framing) String() string {
	if int(f) < len(framingNames) {
		return framingNames[f]
	}
	return "Framing(" + strconv.Itoa(int(f)) + ")"
}

// Set parses s into f, so that *Framing is a flag.Value.
func (f *Framing) Set(s string) error {
	v, err := ParseFraming(s)
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (f Framing) MarshalText() ([]byte, error) {
	if int(f) >= len(framingNames) {
		return nil, fmt.Errorf("chat: invalid framing %d", uint8(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *Framing) UnmarshalText(b []byte) error { return f.Set(string(b)) }

// Errors for a message over the limit; next returns them wrapped in a *LimitError.
var (
	ErrLineTooLong   = errors.New("chat: line longer than the message limit")
	ErrFrameTooLarge = errors.New("chat: frame length above the message limit")
)

// LimitError reports a message over the limit. It matches ErrLineTooLong or
// ErrFrameTooLarge with errors.Is.
type LimitError struct {
	Framing Framing // Line or Frame
	Size    int64   // the length a frame header announced; 0 for a line, whose end was not seen
	Max     int     // the limit
}

// Error names the limit, and for a frame the length it announced.
func (e *LimitError) Error() string {
	if e.Framing == Frame {
		return fmt.Sprintf("%v (%d > %d)", ErrFrameTooLarge, e.Size, e.Max)
	}
	return fmt.Sprintf("%v (no newline in %d bytes)", ErrLineTooLong, e.Max)
}

// Unwrap returns ErrLineTooLong or ErrFrameTooLarge.
func (e *LimitError) Unwrap() error {
	if e.Framing == Frame {
		return ErrFrameTooLarge
	}
	return ErrLineTooLong
}

const headerLen = 4 // of a frame

// splitter cuts one connection's byte stream into runs of whole messages.
// Whole messages are handed out where they lie in the caller's buffer; only
// the bytes of a message cut by a read boundary are copied, into a pooled
// buffer held while that message is incomplete. Its messages' limit is the
// caller's to keep and give to each call, the same every time: one per
// server (or per kind of client), where it would take a word of every
// session.
type splitter struct {
	framing Framing
	done    bool        // carry holds a message already returned; release it on the next call
	short   bool        // runs of runMax messages at most (set by the caller)
	msgs    int32       // messages returned in runs, for the caller to take (taken); beside the flags, where it packs
	carry   *[]byte     // incomplete message, or nil; a pointer so that pooling it does not allocate
	err     *LimitError // sticky: the connection is going away
}

// taken returns how many messages the runs returned since the last call
// held.
func (s *splitter) taken() int {
	n := s.msgs
	s.msgs = 0
	return int(n)
}

// newSplitter returns a splitter for f. It panics if f is not a known
// framing.
func newSplitter(f Framing) splitter {
	if int(f) >= len(framingNames) {
		panic("chat: invalid framing " + f.String())
	}
	return splitter{framing: f}
}

// splitLimit returns limit as the splitter's methods take it: a message's
// most bytes (for frames, of payload), 0 at least and small enough to add a
// header to.
func splitLimit(limit int) int { return min(math.MaxInt-headerLen, max(0, limit)) }

// runMax is the most messages in one run while the splitter is short: a
// sender's share of a contended room is measured between runs (flow.go),
// and a read full of empty messages is thousands of them.
const runMax = 64

// next returns the next run of whole messages found at the start of in (one
// or more complete messages, contiguous, to relay as one unit; runMax at
// most if s.short) and the rest of in still to be fed. The bytes of a message left incomplete at the end of in are
// copied and completed by later calls; the call that completes such a message
// returns it alone, in the splitter's own buffer, valid until the next call of
// next or reset. A call with an empty in releases that buffer, so a caller can
// drop it before waiting for the next read. After an error, next keeps
// returning it. Messages are at most limit bytes (splitLimit's).
func (s *splitter) next(in []byte, limit int) (run, rest []byte, err error) {
	if s.err != nil {
		return nil, nil, s.err
	}
	if s.done {
		s.reset()
	}
	switch {
	case len(in) == 0:
		return nil, nil, nil
	case s.framing == Raw:
		s.msgs++
		return in, nil, nil
	case s.carry != nil:
		return s.complete(in, limit)
	}
	most := 0
	if s.short {
		most = runMax
	}
	n, lerr := s.whole(in, most, limit)
	if n > 0 {
		// An over-limit message after these is reported by the next call,
		// so that the good messages before it are still relayed.
		return in[:n], in[n:], nil
	}
	if lerr != nil {
		return nil, nil, s.fail(lerr)
	}
	s.carry = getCarry(len(in), s.bufLimit(limit))
	return s.complete(in, limit)
}

// pending reports how many bytes of an incomplete message are carried.
func (s *splitter) pending() int {
	if s.carry == nil || s.done {
		return 0
	}
	return len(*s.carry)
}

// reset drops the carried message, if any, and releases its buffer.
func (s *splitter) reset() {
	if s.carry != nil {
		putCarry(s.carry)
		s.carry = nil
	}
	s.done = false
}

func (s *splitter) fail(err *LimitError) error {
	s.reset()
	s.err = err
	return err
}

// whole returns the length of the whole messages at the start of in, at most
// most of them (0: all), and an error if the message after them is provably
// over limit (splitLimit's).
func (s *splitter) whole(in []byte, most, limit int) (int, *LimitError) {
	n, k := 0, 0
	if most <= 0 {
		most = math.MaxInt
	}
	if s.framing == Line {
		for n < len(in) && k < most {
			w := in[n:]
			// The '\n' of a line within the limit is among its first limit bytes.
			i := bytes.IndexByte(w[:min(len(w), limit)], '\n')
			if i < 0 {
				if len(w) >= limit {
					return n, &LimitError{Framing: Line, Max: limit}
				}
				break
			}
			n += i + 1
			k++
		}
		s.msgs += int32(k)
		return n, nil
	}
	for len(in)-n >= headerLen && k < most {
		size := binary.BigEndian.Uint32(in[n:])
		if uint64(size) > uint64(limit) {
			return n, &LimitError{Framing: Frame, Size: int64(size), Max: limit}
		}
		if int(size) > len(in)-n-headerLen {
			break
		}
		n += headerLen + int(size)
		k++
	}
	s.msgs += int32(k)
	return n, nil
}

// complete feeds in to the carried message.
func (s *splitter) complete(in []byte, limit int) (run, rest []byte, err error) {
	if s.framing == Line {
		room := limit - len(*s.carry) // what the line may still take, '\n' included
		i := bytes.IndexByte(in[:min(len(in), room)], '\n')
		if i < 0 {
			if len(in) >= room {
				return nil, nil, s.fail(&LimitError{Framing: Line, Max: limit})
			}
			s.append(in, len(*s.carry)+len(in), limit)
			return nil, nil, nil
		}
		in, rest = in[:i+1], in[i+1:]
		s.append(in, len(*s.carry)+len(in), limit)
		s.done = true
		s.msgs++
		return *s.carry, rest, nil
	}
	if have := len(*s.carry); have < headerLen {
		k := min(headerLen-have, len(in))
		s.append(in[:k], headerLen, limit)
		if in = in[k:]; len(*s.carry) < headerLen {
			return nil, nil, nil
		}
		if size := binary.BigEndian.Uint32(*s.carry); uint64(size) > uint64(limit) {
			return nil, nil, s.fail(&LimitError{Framing: Frame, Size: int64(size), Max: limit})
		}
	}
	total := headerLen + int(binary.BigEndian.Uint32(*s.carry))
	k := min(total-len(*s.carry), len(in))
	s.append(in[:k], total, limit)
	if len(*s.carry) < total {
		return nil, nil, nil
	}
	s.done = true
	s.msgs++
	return *s.carry, in[k:], nil
}

// append adds p to the carried message, first making room for size bytes.
// limit is the messages' (splitLimit's).
func (s *splitter) append(p []byte, size, limit int) {
	if b := *s.carry; cap(b) < size {
		nb := getCarry(size, s.bufLimit(limit))
		*nb = append(*nb, b...)
		putCarry(s.carry)
		s.carry = nb
	}
	*s.carry = append(*s.carry, p...)
}

// bufLimit is the largest message in bytes, frame header included, of at
// most limit bytes (splitLimit's).
func (s *splitter) bufLimit(limit int) int {
	if s.framing == Frame {
		return limit + headerLen
	}
	return limit
}

// carryPools hold carry buffers by size class: 256 B, 4 KiB, 64 KiB, 1 MiB,
// and larger. Classes keep a connection carrying a short partial line from
// pinning a buffer sized for the largest message.
var carryPools [5]sync.Pool

func carryClass(n int) (class, size int) {
	size = 256
	for n > size && class < len(carryPools)-1 {
		class++
		size <<= 4
	}
	return class, size
}

// getCarry returns an empty buffer with room for n bytes; it need not have
// room for more than limit.
func getCarry(n, limit int) *[]byte {
	class, size := carryClass(n)
	if p, _ := carryPools[class].Get().(*[]byte); p != nil && cap(*p) >= n {
		return p
	}
	// A pooled buffer too small for n (left by a splitter with a smaller
	// limit) is dropped.
	b := make([]byte, 0, max(n, min(size, limit)))
	return &b
}

func putCarry(p *[]byte) {
	class, _ := carryClass(cap(*p))
	*p = (*p)[:0]
	carryPools[class].Put(p)
}
