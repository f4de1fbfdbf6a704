package load

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"cport.dev/cport/chat"
)

// Kinds of messages.
const (
	kindData  = 'd'
	kindProbe = 'p'
)

// Layout of a message body (see the package documentation).
const (
	offSender = 1
	offSeq    = 9
	offTime   = 21
	offCheck  = 33
	headerLen = 41

	seqDigits  = offTime - offSeq   // 12 hex digits: 48 bits
	timeDigits = offCheck - offTime // 12 hex digits: 48 bits of nanoseconds, 78 hours

	// patternPeriod is how many offsets into the padding pattern exist: a
	// prime, so that neighbouring messages rarely share their padding.
	patternPeriod = 251
)

// MinSize returns the smallest message size a framing can carry.
func MinSize(f chat.Framing) int {
	if f == chat.Line {
		return headerLen + 1
	}
	return headerLen
}

// MaxSize is the largest message size Run accepts.
const MaxSize = 1 << 20

// status is what parse found.
type status uint8

const (
	intact    status = iota
	badBody          // the header is sound, the padding or the length is not
	badHeader        // nothing in the message can be trusted
)

// A header is the decoded start of a message.
type header struct {
	kind   byte
	sender uint32
	seq    uint64
	time   int64
}

// A codec writes and checks messages of one framing and size. It is
// read-only once made, and shared by every goroutine of a run.
type codec struct {
	framing chat.Framing
	ws      bool   // messages are WebSocket messages (newWSCodec)
	size    int    // as Config.Size
	body    int    // header and padding: size, less the '\n' of a line
	wire    int    // bytes a client writes: size, plus the header of a frame
	pattern []byte // the padding source: patternPeriod + body bytes
}

func newCodec(f chat.Framing, size int) (*codec, error) {
	if f != chat.Frame && f != chat.Line {
		return nil, fmt.Errorf("load: framing %s cannot be checked: use frame or line", f)
	}
	if size < MinSize(f) || size > MaxSize {
		return nil, fmt.Errorf("load: message size %d out of range [%d, %d] for %s framing", size, MinSize(f), MaxSize, f)
	}
	c := &codec{framing: f, size: size, body: size, wire: size}
	if f == chat.Frame {
		c.wire += 4
	} else {
		c.body--
	}
	// A fixed pseudo-random stream of printable bytes (no '\n': it must not
	// end a line). Only its first patternPeriod + padding bytes are used.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	c.pattern = make([]byte, patternPeriod+c.body-headerLen)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range c.pattern {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		c.pattern[i] = alphabet[x>>58]
	}
	return c, nil
}

// newWSCodec returns the codec of WebSocket clients (Config.WebSocket):
// a message is the payload of one WebSocket message, size bytes, as with
// frame framing; a client writes it as one masked frame (client.appendMsg).
func newWSCodec(size int) (*codec, error) {
	if size < MinSize(chat.Frame) || size > MaxSize {
		return nil, fmt.Errorf("load: message size %d out of range [%d, %d] for WebSocket messages", size, MinSize(chat.Frame), MaxSize)
	}
	c, err := newCodec(chat.Frame, size)
	if err != nil {
		return nil, err
	}
	c.ws = true
	c.wire = wsClientHeaderLen(size) + size
	return c, nil
}

// mix is the finalizer of MurmurHash3: every input bit affects every output bit.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// checksum is the check field of a header. Changing any one field changes
// the value mix is given (each term is a bijection of its field), hence
// the checksum (mix is a bijection too).
func checksum(h header) uint32 {
	x := mix(uint64(h.kind)<<56 ^ uint64(h.sender)<<24 ^ h.seq*0x9e3779b97f4a7c15 ^ uint64(h.time)*0xc2b2ae3d27d4eb4f)
	return uint32(x ^ x>>32)
}

// padding returns the padding of a message whose checksum is check.
func (c *codec) padding(check uint32) []byte {
	off := check % patternPeriod
	return c.pattern[off : off+uint32(c.body-headerLen)]
}

// append appends the whole message h (framing included) to dst; not for
// WebSocket messages (see client.appendMsg).
func (c *codec) append(dst []byte, h header) []byte {
	if c.framing == chat.Frame {
		dst = binary.BigEndian.AppendUint32(dst, uint32(c.body))
	}
	dst = c.appendBody(dst, h)
	if c.framing == chat.Line {
		dst = append(dst, '\n')
	}
	return dst
}

// appendBody appends the body of message h to dst: header and padding.
func (c *codec) appendBody(dst []byte, h header) []byte {
	dst = append(dst, h.kind)
	dst = appendHex(dst, uint64(h.sender), offSeq-offSender)
	dst = appendHex(dst, h.seq, seqDigits)
	dst = appendHex(dst, uint64(h.time), timeDigits)
	check := checksum(h)
	dst = appendHex(dst, uint64(check), headerLen-offCheck)
	return append(dst, c.padding(check)...)
}

// parse checks a message body: the message without its frame header or
// its '\n'. It allocates nothing.
func (c *codec) parse(b []byte) (header, status) {
	var h header
	if len(b) < headerLen {
		return h, badHeader
	}
	h.kind = b[0]
	if h.kind != kindData && h.kind != kindProbe {
		return h, badHeader
	}
	// The 40 hex digits after the kind, as five runs of 8: sender; seq's
	// top 32 bits; seq's low 16 bits and time's top 16; time's low 32; check.
	d0, ok0 := parseHex8(b[1:])
	d1, ok1 := parseHex8(b[9:])
	d2, ok2 := parseHex8(b[17:])
	d3, ok3 := parseHex8(b[25:])
	d4, ok4 := parseHex8(b[33:])
	if !(ok0 && ok1 && ok2 && ok3 && ok4) {
		return h, badHeader
	}
	h.sender = d0
	h.seq = uint64(d1)<<16 | uint64(d2>>16)
	h.time = int64(d2&0xffff)<<32 | int64(d3)
	if d4 != checksum(h) {
		return h, badHeader
	}
	if len(b) != c.body || !bytes.Equal(b[headerLen:], c.padding(d4)) {
		return h, badBody
	}
	return h, intact
}

const hexDigits = "0123456789abcdef"

// appendHex appends the low 4*n bits of v as n lowercase hex digits.
func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// parseHex8 decodes the 8 lowercase hex digits at the start of b, all
// eight at once (SWAR). Anything but lowercase hex is invalid, so that each
// value has exactly one spelling: the digits are valid when spelling the
// value decoded gives them back, since only lowercase hex digits are ever
// spelled.
func parseHex8(b []byte) (uint32, bool) {
	const ones = 0x0101010101010101
	x := binary.BigEndian.Uint64(b)
	letters := x >> 6 & ones                         // 'a'-'f' have bit 6 set, '0'-'9' not
	n := (x&(0x0f*ones) + 9*letters) & (0x0f * ones) // one nibble value per byte
	// Spell n: '0' + n, and 'a' - '0' - 10 more from 10 up (n + 6 carries
	// into bit 4). No byte carries into the next.
	ten := (n + 6*ones) >> 4 & ones
	valid := n+'0'*ones+('a'-'0'-10)*ten == x
	v := (n | n>>4) & 0x00ff00ff00ff00ff
	v = (v | v>>8) & 0x0000ffff0000ffff
	v = (v | v>>16) & 0x00000000ffffffff
	return uint32(v), valid
}
