package chat

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// The WebSocket protocol (RFC 6455) as the gateway speaks it: no
// extensions, no subprotocol. A client's frames are decoded into whole
// messages and written, in Frame framing, to the session's own buffer, which
// relayAll cuts and relays as it does a TCP client's receive (see
// gateway.go). The server's frames are unmasked, so one encoding of a
// message serves every WebSocket client.

// Opcodes.
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// Close codes (RFC 6455, section 7.4.1).
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocol      = 1002
	closeInvalidData   = 1007
	closeTooBig        = 1009
	closeInternalError = 1011
)

// A WSError is a client's breach of the WebSocket protocol: the server
// fails the connection with Code.
type WSError struct {
	Code   int    // the close code: 1002 protocol, 1007 invalid data, 1009 too big
	Reason string // what was wrong
}

// Error says what was wrong and the close code.
func (e *WSError) Error() string {
	return fmt.Sprintf("chat: websocket: %s (close %d)", e.Reason, e.Code)
}

// Is matches ErrFrameTooLarge for a message over the limit, so that it is
// counted as Stats.Oversize.
func (e *WSError) Is(target error) bool {
	return e.Code == closeTooBig && target == ErrFrameTooLarge
}

func wsFail(code int, format string, a ...any) error {
	return &WSError{Code: code, Reason: fmt.Sprintf(format, a...)}
}

// wsDecoder decodes one client's frames. It is owned like session.split.
type wsDecoder struct {
	limit int    // the most payload bytes of a message
	in    []byte // an incomplete frame: its bytes so far
	msg   []byte // the payload of the fragments of a message so far
	msgOp byte   // opText or opBinary while a fragmented message goes on; 0: none
	// started says the message left incomplete at the end of the last
	// decode began in it (for Config.MessageTimeout).
	started bool
	// reply holds the frames to send back (pongs, the close), out the
	// messages decoded, in Frame framing; both are the caller's to take.
	reply []byte
	out   []byte
	// closed: a close frame came, answered in reply; what follows it is
	// ignored.
	closed bool
	done   uint32 // messages completed, ever (wrapping)
}

// pending returns how many bytes of an incomplete frame or message the
// decoder holds.
func (d *wsDecoder) pending() int { return len(d.in) + len(d.msg) }

// reset drops what the decoder holds.
func (d *wsDecoder) reset() {
	d.in, d.msg, d.msgOp, d.out, d.reply = nil, nil, 0, nil, nil
}

// decode feeds the bytes b of a receive to the decoder. It appends the
// messages they complete to d.out, one frame each (a 4-byte length, then
// the payload), and the frames to answer with to d.reply. After a close
// frame, or an error, nothing more is decoded.
func (d *wsDecoder) decode(b []byte) error {
	if d.closed {
		return nil
	}
	was, done := d.pending() > 0 || d.msgOp != 0, d.done
	buf := b
	if len(d.in) > 0 {
		d.in = append(d.in, b...)
		buf = d.in
	}
	for len(buf) > 0 {
		n, err := d.frame(buf)
		if err != nil {
			d.in = nil
			return err
		}
		if n == 0 {
			break // incomplete
		}
		buf = buf[n:]
		if d.closed {
			buf = nil
		}
	}
	switch {
	case len(buf) == 0:
		d.in = d.in[:0]
	case len(d.in) > 0: // buf is the tail of d.in
		d.in = append(d.in[:0], buf...)
	default:
		d.in = append(d.in, buf...)
	}
	// The message left incomplete began in b if none was before, or if b
	// completed that one.
	d.started = (d.pending() > 0 || d.msgOp != 0) && (!was || d.done != done)
	d.trim()
	return nil
}

// trim lets go of buffers grown past wsKeep by a large message, so that an
// idle client holds little.
func (d *wsDecoder) trim() {
	if len(d.in) == 0 && cap(d.in) > wsKeep {
		d.in = nil
	}
	if len(d.msg) == 0 && cap(d.msg) > wsKeep {
		d.msg = nil
	}
}

// wsKeep is the most a decoder's idle buffers keep.
const wsKeep = 4 << 10

// frame decodes the frame at the start of b, if b holds all of it, and
// returns its length; 0 if b holds only part of it. A frame is checked as
// soon as its header is whole, so that a frame over the limit is refused
// before its payload is waited for.
func (d *wsDecoder) frame(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, nil
	}
	fin, rsv, op := b[0]&0x80 != 0, b[0]&0x70, b[0]&0x0F
	masked, n7 := b[1]&0x80 != 0, int64(b[1]&0x7F)
	hlen := 2
	switch n7 {
	case 126:
		hlen = 4
	case 127:
		hlen = 10
	}
	if len(b) < hlen {
		return 0, nil
	}
	size := n7
	switch n7 {
	case 126:
		size = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return 0, wsFail(closeProtocol, "frame length %d has its top bit set", u)
		}
		size = int64(u)
	}
	if rsv != 0 {
		return 0, wsFail(closeProtocol, "reserved bits %#x set, no extension negotiated", rsv>>4)
	}
	if !masked {
		return 0, wsFail(closeProtocol, "client frame not masked")
	}
	control := op&0x8 != 0
	switch {
	case op > opBinary && op < opClose || op > opPong:
		return 0, wsFail(closeProtocol, "unknown opcode %#x", op)
	case control && !fin:
		return 0, wsFail(closeProtocol, "fragmented control frame (opcode %#x)", op)
	case control && size > 125:
		return 0, wsFail(closeProtocol, "control frame of %d bytes, over 125", size)
	case op == opCont && d.msgOp == 0:
		return 0, wsFail(closeProtocol, "continuation frame with no message begun")
	case (op == opText || op == opBinary) && d.msgOp != 0:
		return 0, wsFail(closeProtocol, "new message (opcode %#x) before the last one's final fragment", op)
	case !control && int64(len(d.msg))+size > int64(d.limit):
		return 0, wsFail(closeTooBig, "message of %d bytes or more, over the limit of %d", int64(len(d.msg))+size, d.limit)
	}
	hlen += 4
	total := int64(hlen) + size
	if int64(len(b)) < total {
		return 0, nil
	}
	mask := [4]byte(b[hlen-4 : hlen])
	payload := b[hlen:total]
	switch {
	case control:
		return int(total), d.control(op, unmasked(nil, payload, mask))
	case fin && op != opCont: // a whole message: straight to out
		at := len(d.out)
		d.out = binary.BigEndian.AppendUint32(d.out, uint32(size))
		d.out = unmasked(d.out, payload, mask)
		if op == opText && !utf8.Valid(d.out[at+headerLen:]) {
			d.out = d.out[:at] // never relayed
			return 0, wsFail(closeInvalidData, "text message not valid UTF-8")
		}
		d.done++
	default:
		if op != opCont {
			d.msgOp = op
		}
		d.msg = unmasked(d.msg, payload, mask)
		if !fin {
			break
		}
		if d.msgOp == opText && !utf8.Valid(d.msg) {
			return 0, wsFail(closeInvalidData, "text message not valid UTF-8")
		}
		d.out = binary.BigEndian.AppendUint32(d.out, uint32(len(d.msg)))
		d.out = append(d.out, d.msg...)
		d.msg, d.msgOp = d.msg[:0], 0
		d.done++
	}
	return int(total), nil
}

// control handles a control frame's payload p: a ping is answered with a
// pong, a close with a close (its code echoed), a pong ignored.
func (d *wsDecoder) control(op byte, p []byte) error {
	switch op {
	case opPing:
		d.reply = appendWSFrame(d.reply, opPong, p)
	case opClose:
		code := closeNormal
		switch {
		case len(p) == 1:
			return wsFail(closeProtocol, "close frame of 1 byte")
		case len(p) >= 2:
			code = int(binary.BigEndian.Uint16(p))
			if !validCloseCode(code) {
				return wsFail(closeProtocol, "close code %d not allowed", code)
			}
			if !utf8.Valid(p[2:]) {
				return wsFail(closeInvalidData, "close reason not valid UTF-8")
			}
		}
		d.reply = appendWSClose(d.reply, code, "")
		d.closed = true
	}
	return nil
}

// validCloseCode reports whether a peer may send code (RFC 6455, 7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011:
		return true
	}
	return code >= 3000 && code <= 4999
}

// unmasked appends p, unmasked with key, to dst.
func unmasked(dst, p []byte, key [4]byte) []byte {
	at := len(dst)
	dst = append(dst, p...)
	b := dst[at:]
	k := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
	return dst
}

// wsHeaderLen returns the length of a server frame's header for an n-byte
// payload.
func wsHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// appendWSFrame appends a final, unmasked frame of opcode op and payload p.
func appendWSFrame(dst []byte, op byte, p []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, p...)
}

// appendWSClose appends a close frame of code and reason.
func appendWSClose(dst []byte, code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return appendWSFrame(dst, opClose, append(p, reason...))
}

// messages calls f with each message of run, a run of whole messages in
// framing f: a line without its newline, a frame's payload, a raw run
// whole.
func messages(f Framing, run []byte, each func([]byte)) {
	switch f {
	case Raw:
		each(run)
	case Line:
		for len(run) > 0 {
			i := 0
			for i < len(run) && run[i] != '\n' {
				i++
			}
			each(run[:i])
			run = run[min(i+1, len(run)):]
		}
	case Frame:
		for len(run) >= headerLen {
			n := headerLen + int(binary.BigEndian.Uint32(run))
			each(run[headerLen:n])
			run = run[n:]
		}
	}
}

// wsEncodedLen returns the length of run, in framing f, as server frames.
func wsEncodedLen(f Framing, run []byte) int {
	n := 0
	messages(f, run, func(p []byte) { n += wsHeaderLen(len(p)) + len(p) })
	return n
}

// appendWSMessages appends run, a run of whole messages in framing f, as
// server frames: one per message, text if it is valid UTF-8, else binary.
func appendWSMessages(dst []byte, f Framing, run []byte) []byte {
	messages(f, run, func(p []byte) {
		op := byte(opBinary)
		if utf8.Valid(p) {
			op = opText
		}
		dst = appendWSFrame(dst, op, p)
	})
	return dst
}

// framed appends run, messages in Frame framing (a WebSocket client's, as
// decoded), to dst in framing f, the server's: for Line, each payload and
// a newline; for Raw, the payloads back to back.
func framed(dst []byte, f Framing, run []byte) []byte {
	if f == Frame {
		return append(dst, run...)
	}
	messages(Frame, run, func(p []byte) {
		dst = append(dst, p...)
		if f == Line {
			dst = append(dst, '\n')
		}
	})
	return dst
}
