package load

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// WSPath is the path that a WebSocket client asks to upgrade (the chat
// gateway's).
const WSPath = "/ws"

// wsGUID is what RFC 6455 appends to a key to compute its accept value.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsMaxResponse bounds the handshake's response header.
const wsMaxResponse = 4 << 10

// wsAccept returns the Sec-WebSocket-Accept that answers key.
func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// A WSHandshakeError is a WebSocket handshake that failed: the server
// answered something else than a valid upgrade, or nothing.
type WSHandshakeError struct {
	Addr   string // the server's
	Status string // the response's status line, if one came
	Reason string
}

func (e *WSHandshakeError) Error() string {
	return fmt.Sprintf("WebSocket handshake (GET %s): %s", WSPath, e.Reason)
}

// wsHandshake upgrades conn, a new connection to addr, to a WebSocket,
// within dialTimeout, and returns what the server sent past its response
// (frames, already) and a seed for the client's masking keys.
func wsHandshake(ctx context.Context, conn net.Conn, addr string) (rest []byte, seed uint64, err error) {
	var nonce [24]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:16])
	seed = binary.LittleEndian.Uint64(nonce[16:]) | 1

	conn.SetDeadline(time.Now().Add(dialTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(status, format string, args ...any) ([]byte, uint64, error) {
		return nil, 0, &WSHandshakeError{Addr: addr, Status: status, Reason: fmt.Sprintf(format, args...)}
	}
	req := "GET " + WSPath + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fail("", "sending the request: %v", err)
	}
	buf := make([]byte, wsMaxResponse)
	n, end := 0, -1
	for end < 0 {
		if n == len(buf) {
			return fail(statusLine(buf), "the response's header is longer than %d bytes", wsMaxResponse)
		}
		k, err := conn.Read(buf[n:])
		n += k
		if head := buf[:min(n, 5)]; !bytes.HasPrefix([]byte("HTTP/"), head) {
			err := notHTTP(buf[:n])
			err.Addr = addr
			return nil, 0, err
		}
		if end = bytes.Index(buf[:n], []byte("\r\n\r\n")); end >= 0 {
			break
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, 0, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fail(statusLine(buf[:n]), "no whole response within %v (%d bytes came): is %s a WebSocket address (cport serve --ws-addr)?", dialTimeout, n, addr)
		case err == io.EOF && n == 0:
			return fail("", "the server closed the connection without answering")
		case err == io.EOF:
			return fail(statusLine(buf[:n]), "the server closed the connection in the middle of its response, after %d bytes: %q", n, truncate(buf[:n], 80))
		default:
			return fail(statusLine(buf[:n]), "reading the response: %v", err)
		}
	}
	conn.SetDeadline(time.Time{})
	if ctx.Err() != nil { // the deadline may be the context's
		return nil, 0, ctx.Err()
	}
	if err := checkUpgrade(string(buf[:end]), key); err != nil {
		err.Addr = addr
		return nil, 0, err
	}
	return bytes.Clone(buf[end+4 : n]), seed, nil
}

// checkUpgrade checks head, a response's header without its final blank
// line, as the answer to a handshake with key.
func checkUpgrade(head, key string) *WSHandshakeError {
	status, fields, _ := strings.Cut(head, "\r\n")
	fail := func(format string, args ...any) *WSHandshakeError {
		return &WSHandshakeError{Status: status, Reason: fmt.Sprintf(format, args...)}
	}
	proto, code, _ := strings.Cut(status, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		return notHTTP([]byte(status))
	}
	if code, _, _ = strings.Cut(code, " "); code != "101" {
		return fail("the server answered %q, not 101 Switching Protocols: is this the WebSocket address of a chat server (cport serve --ws-addr)?", status)
	}
	var upgrade, connection, accept string
	for line := range strings.SplitSeq(fields, "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return fail("malformed header line %q", truncate([]byte(line), 80))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "upgrade":
			upgrade = value
		case "connection":
			connection = value
		case "sec-websocket-accept":
			accept = value
		case "sec-websocket-extensions":
			return fail("the server chose extensions %q, which the client did not offer", value)
		case "sec-websocket-protocol":
			return fail("the server chose subprotocol %q, which the client did not offer", value)
		}
	}
	hasToken := func(list, token string) bool {
		for t := range strings.SplitSeq(list, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
		return false
	}
	switch want := wsAccept(key); {
	case !strings.EqualFold(upgrade, "websocket"):
		return fail("the response's Upgrade is %q, not websocket", upgrade)
	case !hasToken(connection, "upgrade"):
		return fail("the response's Connection is %q, without upgrade", connection)
	case accept != want:
		return fail("the response's Sec-WebSocket-Accept is %q, want %q (the SHA-1 of the key sent and RFC 6455's GUID)", accept, want)
	}
	return nil
}

// notHTTP is the error of an answer that begins with b, not HTTP.
func notHTTP(b []byte) *WSHandshakeError {
	return &WSHandshakeError{
		Status: statusLine(b),
		Reason: fmt.Sprintf("the answer is not HTTP (it begins %q): is this a chat server's TCP address rather than its WebSocket one (cport serve --ws-addr)?", truncate(b, 40)),
	}
}

// statusLine returns the first line of a response, as far as it came.
func statusLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\r\n"))
	return string(truncate(line, 80))
}

// truncate returns b, cut to n bytes at most.
func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
