package chat

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cport.dev/cport"
)

// The WebSocket gateway (Config.WSAddr) is a second listener of the port:
// its connections are accepted by the engine like TCP clients, and their
// HTTP request is read and answered by the engine too, no goroutine of
// their own. A request for / gets the chat page (web/index.html); one for
// /ws is upgraded (RFC 6455), and the client joins the room: each message
// it sends is relayed to every client, and every client's messages reach
// it, one frame each. A WebSocket client's receives are decoded into whole
// messages (wsDecoder), in Frame framing, in its session's own buffer,
// which relayAll cuts and relays as it relays a TCP client's receive: the
// same limits, the same pause of a sender too far ahead (the receive
// completion is held, the decoded buffer with it). A relay encodes its
// message as WebSocket frames once, at the first WebSocket client it
// meets (outgoing), and queues that one buffer on all of them.

//go:embed web/index.html
var chatPage []byte

// wsSide is a WebSocket client's part of its session, owned like
// session.split.
type wsSide struct {
	req  []byte // the HTTP request so far, until its header ends
	open bool   // upgraded: frames follow
	dec  wsDecoder
}

// wsMaxRequest bounds a request's header.
const wsMaxRequest = 8 << 10

// wsGUID is RFC 6455's key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// reasonWSClose is the end of a WebSocket client that closed: not a fault.
const reasonWSClose = "websocket close"

// acceptedWS starts reading the HTTP request of a connection accepted on
// the WebSocket listener, within WSHandshakeTimeout. It is counted against
// MaxConns from now on, like a TLS client in its handshake.
func (s *Server) acceptedWS(c *cport.Completion) {
	if c.Err != nil {
		if !errors.Is(c.Err, cport.ErrCanceled) {
			s.log.Warn("accept failed", "listener", "websocket", "err", c.Err)
		}
		return
	}
	ss := &session{conn: c.Conn, web: true, ext: &sessionExt{ws: &wsSide{}}}
	if !s.admit(ss) {
		return
	}
	if max := int64(s.cfg.MaxConns); max > 0 && s.stats.active.Load()+s.handshaking.Load() >= max {
		s.refuse(ss)
		return
	}
	s.handshaking.Add(1)
	ss.conn.SetValue(ss)
	err := ss.conn.SetReadDeadline(time.Now().Add(s.cfg.WSHandshakeTimeout))
	if err == nil {
		err = ss.conn.Recv(tagRecv)
	}
	if err != nil {
		s.unshake(ss, err)
	}
}

// unshake ends a connection of the WebSocket listener before it joined
// the room: it failed (reset), or it was answered and is closed gracefully
// (err nil).
func (s *Server) unshake(ss *session, err error) {
	s.handshaking.Add(-1)
	s.leave(ss)
	if err == nil {
		s.closeConn(ss.conn)
		return
	}
	// A connection that closes before it says anything is a port probe,
	// not a failure; one canceled, the server closing.
	probe := ss.ext.ws.req == nil && (errors.Is(err, io.EOF) || peerLeft(err))
	if !probe && !errors.Is(err, cport.ErrCanceled) {
		s.stats.webFailed.Add(1)
		s.events.add(evWSHandshake, addrString(ss.conn.RemoteAddr()), slog.String("err", err.Error()))
	}
	ss.conn.Abort()
}

// shake handles a receive of a connection of the WebSocket listener that
// has not been upgraded: its request's bytes, until the header is whole.
func (s *Server) shake(ss *session, c *cport.Completion, t *tally) {
	ws := ss.ext.ws
	if c.Err != nil {
		c.Release()
		s.unshake(ss, c.Err)
		return
	}
	ws.req = append(ws.req, c.Buf...)
	c.Release()
	end := bytes.Index(ws.req, []byte("\r\n\r\n"))
	if end < 0 || end > wsMaxRequest {
		if len(ws.req) > wsMaxRequest {
			s.answer(ss, http.StatusRequestHeaderFieldsTooLarge, "request header over 8KiB")
			return
		}
		if err := ss.conn.Recv(tagRecv); err != nil {
			s.unshake(ss, err)
		}
		return
	}
	end += 4
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(ws.req[:end])))
	if err != nil {
		s.answer(ss, http.StatusBadRequest, "malformed request")
		return
	}
	switch path := req.URL.Path; {
	case path == "/" || path == "/index.html":
		s.servePage(ss, req)
	case path == "/ws":
		s.upgrade(ss, req, ws.req[end:], t)
	default:
		s.answer(ss, http.StatusNotFound, "not found")
	}
}

// servePage answers a GET or HEAD of the chat page.
func (s *Server) servePage(ss *session, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		s.answer(ss, http.StatusMethodNotAllowed, "use GET")
		return
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"Cache-Control: no-cache\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n" +
		"Connection: close\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(chatPage))
	if req.Method == http.MethodGet {
		b.Write(chatPage)
	}
	s.reply(ss, b.Bytes())
	s.stats.webPages.Add(1)
	s.unshake(ss, nil)
}

// answer sends an HTTP error response of status with text, then closes the
// connection gracefully.
func (s *Server) answer(ss *session, status int, text string) {
	s.answerWith(ss, status, "", text)
}

func (s *Server) answerWith(ss *session, status int, header, text string) {
	text += "\n"
	s.reply(ss, fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), header, len(text), text))
	s.stats.webRefused.Add(1)
	s.events.add(evWSRefused, addrString(ss.conn.RemoteAddr()), slog.Int("status", status), slog.String("why", strings.TrimSpace(text)))
	s.unshake(ss, nil)
}

// reply queues b to the session's client alone.
func (s *Server) reply(ss *session, b []byte) {
	m := cport.MsgOf(b)
	ss.conn.SendQuiet(m) // fails only once the connection is closed: nothing to tell
	m.Release()
}

// upgrade checks a WebSocket upgrade request and, if it is one the server
// takes, answers 101 and joins the client to the room. rest is what the
// client sent after the request, frames already.
func (s *Server) upgrade(ss *session, req *http.Request, rest []byte, t *tally) {
	h := req.Header
	switch {
	case req.Method != http.MethodGet:
		s.answer(ss, http.StatusMethodNotAllowed, "a WebSocket upgrade is a GET")
		return
	case !hasToken(h, "Connection", "upgrade") || !hasToken(h, "Upgrade", "websocket"):
		s.answerWith(ss, http.StatusUpgradeRequired, "Upgrade: websocket\r\n", "this is a WebSocket endpoint: connect with a WebSocket client")
		return
	case h.Get("Sec-WebSocket-Version") != "13":
		s.answerWith(ss, http.StatusUpgradeRequired, "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 only")
		return
	case !s.originAllowed(req):
		s.answer(ss, http.StatusForbidden, "origin "+strconv.Quote(h.Get("Origin"))+" not allowed (--ws-origin)")
		return
	}
	key := h.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		s.answer(ss, http.StatusBadRequest, "Sec-WebSocket-Key is not 16 bytes in base64")
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	s.reply(ss, []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n"))
	s.stats.webUpgrades.Add(1)
	ws := ss.ext.ws
	ws.open = true
	ws.dec.limit = s.cfg.MaxMessage
	if s.cfg.Framing == Line {
		ws.dec.limit-- // room for the newline
	}
	rest = bytes.Clone(rest)
	ws.req = nil
	s.handshaking.Add(-1)
	if err := ss.conn.SetReadDeadline(time.Time{}); err != nil {
		s.leave(ss)
		ss.conn.Abort()
		return
	}
	if !s.join(ss) {
		return
	}
	if len(rest) > 0 && !s.receivedWS(ss, rest, nil, t) {
		return
	}
	if err := ss.conn.RecvMulti(tagRecv); err != nil {
		s.ended(ss, err)
	}
}

// hasToken reports whether the comma-separated values of header name hold
// token, in any case.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// originAllowed applies Config.WSOrigins to a request: with none, a
// browser's request must come from a page of the server's own host (its
// Origin's host is the request's Host); a request without an Origin is
// not a browser's, and is let in.
func (s *Server) originAllowed(req *http.Request) bool {
	origin := req.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.cfg.WSOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, req.Host)
	}
	for _, o := range s.cfg.WSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// receivedWS handles bytes b received from an upgraded WebSocket client:
// it decodes them, answers its pings and its close, and relays the
// messages. c is the receive completion of b, held if the session is
// paused, and released otherwise; nil for bytes that came with the
// request, which are relayed whole. It reports whether the session goes
// on.
func (s *Server) receivedWS(ss *session, b []byte, c *cport.Completion, t *tally) bool {
	d := &ss.ext.ws.dec
	d.out = d.out[:0]
	err := d.decode(b)
	if len(d.reply) > 0 && !d.closed {
		s.reply(ss, d.reply)
		d.reply = d.reply[:0]
	}
	at, pause := s.relayAll(ss, d.out, 0, t)
	for c == nil && pause && at < len(d.out) { // no receive to hold
		at, pause = s.relayAll(ss, d.out, at, t)
	}
	switch {
	case err != nil:
		ss.kill(reasonBadInput, err)
	case d.closed:
		// Out of the room first, so that no relay queues a message after
		// the close frame; then the answer, and a graceful close.
		s.hub.remove(ss)
		s.reply(ss, d.reply)
		d.reply = nil
		ss.kill(reasonWSClose, nil)
	case pause && c != nil:
		ss.heldAt = heldAt(at, d.out)
		s.pause(ss, c) // c is released when ss may go on
		return true
	}
	if cap(d.out) > wsKeep {
		d.out = nil
	}
	if c != nil {
		c.Release()
	}
	return err == nil && !d.closed
}

// msgOf returns run, whole messages that ss sent, as the server's framing
// has them: a WebSocket client's are in Frame framing, as its decoder
// wrote them.
func (s *Server) msgOf(ss *session, run []byte) *cport.Msg {
	if !ss.web || s.cfg.Framing == Frame {
		return cport.MsgOf(run)
	}
	n := len(run)
	messages(Frame, run, func([]byte) { n -= headerLen })
	if s.cfg.Framing == Line {
		n += countMsgs(Frame, run)
	}
	m := cport.NewMsg(n)
	framed(m.Bytes()[:0], s.cfg.Framing, run)
	return m
}

// goingAway queues a close frame (1001, going away) to every WebSocket
// client: the server is shutting down, and relays nothing more. Shutdown
// then waits for it to be written with the rest.
func (s *Server) goingAway() {
	bye := cport.MsgOf(appendWSClose(nil, closeGoingAway, "server shutting down"))
	s.hub.each(func(ss *session) {
		if ss.web {
			ss.conn.SendQuiet(bye)
		}
	})
	bye.Release()
}
