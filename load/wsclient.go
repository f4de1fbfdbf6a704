package load

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"unicode/utf8"
)

// A wsClient is the WebSocket side of a client (Config.WebSocket).
type wsClient struct {
	pending []byte // what the server sent past its handshake response, for the reader
	// The generators of the masking keys: sendKey's belongs to whoever
	// sends messages (the registration, then the client's sender),
	// ctlKey's to the reader, which answers pings and closes.
	sendKey, ctlKey uint64
	p               wsParser // the reader's
	reply           []byte   // the reader's control frame, reused
}

// nextKey returns the next masking key of the generator whose state is
// *x (xorshift64*): cheap, and unpredictable enough for a load generator
// (RFC 6455 asks for keys that a page's script cannot predict).
func nextKey(x *uint64) uint32 {
	*x ^= *x >> 12
	*x ^= *x << 25
	*x ^= *x >> 27
	return uint32((*x * 0x2545f4914f6cdd1d) >> 32)
}

// upgrade runs the WebSocket handshake on conn, a new connection to addr;
// it closes conn when the handshake fails.
func (r *run) upgrade(ctx context.Context, conn net.Conn, addr string) (*wsClient, error) {
	rest, seed, err := wsHandshake(ctx, conn, addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Two streams from one odd seed: both states are odd, never 0.
	return &wsClient{pending: rest, sendKey: seed, ctlKey: seed * 0x9e3779b97f4a7c15}, nil
}

// appendMsg appends message h, as the client sends it, to dst: framed as
// the codec says, or as one masked binary WebSocket frame.
func (c *client) appendMsg(dst []byte, h header) []byte {
	cd := c.r.codec
	if c.ws == nil {
		return cd.append(dst, h)
	}
	key := nextKey(&c.ws.sendKey)
	dst = appendWSHeader(dst, wsBinary, cd.body, key)
	start := len(dst)
	dst = cd.appendBody(dst, h)
	maskWS(dst[start:], key)
	return dst
}

// scanWS checks every whole message among the frames in the inbox, and
// answers the control frames. It returns an error when the stream ends:
// the server closed the WebSocket, or broke the protocol.
func (c *client) scanWS() error {
	in := &c.in
	for {
		ev, payload, used, err := c.ws.p.next(in.buf[in.start:in.end])
		in.start += used
		if err != nil {
			c.wsReply(wsClose, binary.BigEndian.AppendUint16(nil, 1002)) // protocol error
			return err
		}
		switch ev {
		case wsMore:
			return nil
		case wsMessage:
			c.handle(payload)
		case wsDropped:
			c.corrupted()
		case wsGotPing:
			if err := c.wsReply(wsPong, payload); err != nil {
				return err
			}
		case wsGotClose:
			err := wsCloseError(payload)
			c.wsReply(wsClose, payload[:min(len(payload), 2)])
			return err
		}
	}
}

// wsReply sends a control frame of opcode op and payload (up to 125
// bytes) from the reader.
func (c *client) wsReply(op byte, payload []byte) error {
	key := nextKey(&c.ws.ctlKey)
	b := appendWSHeader(c.ws.reply[:0], op, len(payload), key)
	start := len(b)
	b = append(b, payload...)
	maskWS(b[start:], key)
	c.ws.reply = b
	return c.ctlWrite(b)
}

// wsCloseError describes the close frame of payload that the server sent.
func wsCloseError(payload []byte) error {
	switch {
	case len(payload) == 0:
		return fmt.Errorf("the server closed the WebSocket, with no status")
	case len(payload) == 1:
		return wsProtocolError("close frame of 1 byte")
	}
	code := binary.BigEndian.Uint16(payload)
	reason := payload[2:]
	if !utf8.Valid(reason) {
		return wsProtocolError("close frame's reason is not UTF-8")
	}
	return fmt.Errorf("the server closed the WebSocket: status %d %q", code, reason)
}
