package load

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// WebSocket frames (RFC 6455, section 5), as a load client writes and
// reads them: it writes final masked frames, and parses the server's
// frames where they lie in its inbox, reassembling fragmented messages
// only.

// Opcodes.
const (
	wsCont   = 0x0
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xa
)

// wsMaxHeader is the longest frame header: 2 bytes, an 8-byte length and
// a 4-byte masking key.
const wsMaxHeader = 14

// wsMaxControl is the largest payload of a control frame.
const wsMaxControl = 125

// wsClientHeaderLen returns the length of the header of a masked frame of
// n payload bytes.
func wsClientHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2 + 4
	case n <= 0xffff:
		return 4 + 4
	}
	return 10 + 4
}

// appendWSHeader appends the header of a final frame of opcode op and n
// payload bytes, masked with key; the payload that follows it must be
// masked with maskWS.
func appendWSHeader(dst []byte, op byte, n int, key uint32) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return binary.BigEndian.AppendUint32(dst, key)
}

// maskWS masks (or unmasks) b, the payload of a frame whose masking key
// is key, as appendWSHeader wrote it: eight bytes at a time.
func maskWS(b []byte, key uint32) {
	var kb [4]byte
	binary.BigEndian.PutUint32(kb[:], key)
	k4 := uint64(binary.LittleEndian.Uint32(kb[:]))
	k8 := k4 | k4<<32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k8)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= kb[i&3]
	}
}

// A wsHeader is a parsed frame header.
type wsHeader struct {
	fin    bool
	op     byte
	masked bool
	key    uint32
	len    int    // of the header, masking key included
	n      uint64 // payload bytes
}

// errWSProtocol is the error of every frame that breaks RFC 6455.
var errWSProtocol = errors.New("WebSocket protocol error")

func wsProtocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errWSProtocol, fmt.Sprintf(format, args...))
}

// parseWSHeader parses the frame header at the start of b. It returns ok
// false when b does not hold the whole header yet, and an error for a
// header that RFC 6455 forbids without extensions: reserved bits set, an
// unknown opcode, a fragmented or long control frame, a length not in its
// shortest form or above 2⁶³.
func parseWSHeader(b []byte) (h wsHeader, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0f
	h.masked = b[1]&0x80 != 0
	if rsv := b[0] & 0x70; rsv != 0 {
		return h, false, wsProtocolError("reserved bits %#x set in a frame header (no extension was negotiated)", rsv)
	}
	switch h.op {
	case wsCont, wsText, wsBinary:
	case wsClose, wsPing, wsPong:
		if !h.fin {
			return h, false, wsProtocolError("fragmented control frame (opcode %#x)", h.op)
		}
	default:
		return h, false, wsProtocolError("unknown opcode %#x", h.op)
	}
	n := uint64(b[1] & 0x7f)
	h.len = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, nil
		}
		n = uint64(binary.BigEndian.Uint16(b[2:]))
		h.len = 4
		if n < 126 {
			return h, false, wsProtocolError("length %d in a 16-bit field, not in the 7-bit one", n)
		}
	case 127:
		if len(b) < 10 {
			return h, false, nil
		}
		n = binary.BigEndian.Uint64(b[2:])
		h.len = 10
		if n <= 0xffff || n >= 1<<63 {
			return h, false, wsProtocolError("length %d in a 64-bit field", n)
		}
	}
	if h.op >= wsClose && n > wsMaxControl {
		return h, false, wsProtocolError("control frame (opcode %#x) of %d bytes, above 125", h.op, n)
	}
	h.n = n
	if h.masked {
		if len(b) < h.len+4 {
			return h, false, nil
		}
		h.key = binary.BigEndian.Uint32(b[h.len:])
		h.len += 4
	}
	return h, true, nil
}

// What wsParser.next found.
type wsEvent uint8

const (
	wsMore    wsEvent = iota // nothing whole yet: read more
	wsMessage                // a whole data message
	wsDropped                // a data message too long to hold, skipped
	wsGotPing
	wsGotPong
	wsGotClose
)

// A wsParser finds the messages and control frames in the stream of frames
// that a server sends a client. An unfragmented message (every message of
// the chat gateway) is returned where it lies in the buffer given; a
// fragmented one is copied, fragment by fragment, into a buffer of the
// parser's own, reused.
type wsParser struct {
	max  int    // longest payload kept: longer messages are dropped
	frag []byte // the fragmented message so far
	open bool   // a fragmented message is open: continuation frames follow
	drop bool   // the open message is too long: its fragments are skipped
	skip uint64 // bytes still to skip of a frame too long to hold
}

// next parses b, the bytes received and not consumed yet, up to the next
// event, and returns it with the number of bytes consumed. The payload of
// a message, ping or close lies in b or in the parser, valid until the
// next call. A frame that is not whole is left in b (wsMore) unless it
// is too long to hold, over max: it is then skipped as it arrives, and
// its message is dropped (wsDropped, once per message). The error is a
// protocol error (errWSProtocol): the stream cannot be trusted further.
func (p *wsParser) next(b []byte) (ev wsEvent, payload []byte, used int, err error) {
	// The common case first: a whole short text or binary message.
	if p.skip == 0 && !p.open && len(b) >= 2 {
		if b0, n := b[0], int(b[1]); (b0 == 0x80|wsText || b0 == 0x80|wsBinary) && n < 126 && n <= p.max {
			if 2+n > len(b) {
				return wsMore, nil, 0, nil
			}
			return wsMessage, b[2 : 2+n], 2 + n, nil
		}
	}
	for {
		if p.skip > 0 {
			k := min(p.skip, uint64(len(b)-used))
			used += int(k)
			if p.skip -= k; p.skip > 0 {
				return wsMore, nil, used, nil
			}
		}
		h, ok, err := parseWSHeader(b[used:])
		if err != nil {
			return wsMore, nil, used, err
		}
		if !ok {
			return wsMore, nil, used, nil
		}
		if h.masked {
			return wsMore, nil, used, wsProtocolError("masked frame (opcode %#x) from the server", h.op)
		}
		data := h.op < wsClose
		switch {
		case data && h.op == wsCont && !p.open:
			return wsMore, nil, used, wsProtocolError("continuation frame outside a fragmented message")
		case data && h.op != wsCont && p.open:
			return wsMore, nil, used, wsProtocolError("new message (opcode %#x) inside a fragmented one", h.op)
		}
		if data && h.n > uint64(p.max) { // too long to hold: skip it as it comes
			p.skip = uint64(h.len) + h.n
			dropped := !p.drop // the message was not dropped already
			p.open, p.drop, p.frag = !h.fin, !h.fin, p.frag[:0]
			if dropped {
				return wsDropped, nil, used, nil
			}
			continue
		}
		end := uint64(used+h.len) + h.n
		if end > uint64(len(b)) {
			return wsMore, nil, used, nil
		}
		payload := b[used+h.len : end]
		used = int(end)
		switch {
		case h.op == wsClose:
			return wsGotClose, payload, used, nil
		case h.op == wsPing:
			return wsGotPing, payload, used, nil
		case h.op == wsPong:
			return wsGotPong, payload, used, nil
		case h.op != wsCont && h.fin: // a whole message, the common case
			return wsMessage, payload, used, nil
		case h.op != wsCont: // the first fragment
			p.frag = append(p.frag[:0], payload...)
			p.open, p.drop = true, false
		case p.drop:
			p.open, p.drop = !h.fin, !h.fin
		case len(p.frag)+len(payload) > p.max:
			p.open, p.drop, p.frag = !h.fin, !h.fin, p.frag[:0]
			return wsDropped, nil, used, nil
		default:
			p.frag = append(p.frag, payload...)
			if h.fin {
				p.open = false
				return wsMessage, p.frag, used, nil
			}
		}
	}
}
