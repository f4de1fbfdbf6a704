// Package peer holds what the peer servers of bench share: their command
// line, and the cutting of a byte stream into the messages of PROTOCOL.md.
// Each peer does its own I/O, the way its library is meant to be used.
package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Framing is how a byte stream is cut into messages (PROTOCOL.md, Framing).
type Framing uint8

const (
	Frame Framing = iota // a 4-byte big-endian length N, then N bytes
	Line                 // bytes up to and including '\n'
)

func (f Framing) String() string {
	if f == Line {
		return "line"
	}
	return "frame"
}

// Set parses "frame" or "line", so that *Framing is a flag.Value.
func (f *Framing) Set(s string) error {
	switch s {
	case "frame":
		*f = Frame
	case "line":
		*f = Line
	default:
		return fmt.Errorf("unknown framing %q: want frame or line", s)
	}
	return nil
}

// ErrTooLong reports a message above the --max-message limit: the server
// closes that client's connection.
var ErrTooLong = errors.New("message above the size limit")

// Whole returns the length of the longest prefix of b made of whole
// messages: that prefix can be relayed as it is, as one run of bytes, since
// whole messages never interleave. It returns ErrTooLong, with the length of
// the whole messages before it, when the next message is over max (for a
// frame, a payload above max; for a line, more than max bytes with its '\n',
// which is known as soon as max bytes arrived without one).
func (f Framing) Whole(b []byte, max int) (int, error) {
	n := 0
	if f == Line {
		for {
			i := bytes.IndexByte(b[n:], '\n')
			if i < 0 {
				if len(b)-n >= max {
					return n, ErrTooLong
				}
				return n, nil
			}
			if i+1 > max {
				return n, ErrTooLong
			}
			n += i + 1
		}
	}
	for len(b)-n >= 4 {
		size := binary.BigEndian.Uint32(b[n:])
		if uint64(size) > uint64(max) {
			return n, ErrTooLong
		}
		end := n + 4 + int(size)
		if end > len(b) {
			break
		}
		n = end
	}
	return n, nil
}

// Need returns how many bytes the message at the head of b needs in all,
// when b holds no whole message: the size a reader's buffer must reach.
// For a line it is max, the longest line allowed.
func (f Framing) Need(b []byte, max int) int {
	if f == Frame && len(b) >= 4 {
		return 4 + int(binary.BigEndian.Uint32(b))
	}
	if f == Frame {
		return 4
	}
	return max
}
