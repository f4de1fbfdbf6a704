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
//
// With Config.TLS the gateway speaks TLS: its connections are TLS clients
// (tls.go), whose reader goroutine reads the request (shakeTLS) and then
// decodes frames with the same code (relayWS), and whose writer encrypts
// what is queued to them, frames included.

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
	if s.cfg.TLS != nil { // wss: the request comes after a TLS handshake
		s.startTLS(ss)
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
		s.closeSession(ss)
		return
	}
	// A connection that closes before it says anything is a port probe,
	// not a failure; one canceled, the server closing.
	probe := ss.ext.ws.req == nil && (errors.Is(err, io.EOF) || peerLeft(err))
	if !probe && !errors.Is(err, cport.ErrCanceled) {
		s.stats.webFailed.Add(1)
		s.events.add(evWSHandshake, addrString(ss.conn.RemoteAddr()), slog.String("err", err.Error()))
	}
	if ss.secure {
		ss.ext.tls.close() // its writer ends at the abort
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
	switch s.request(ss, t) {
	case needMore:
		if err := ss.conn.Recv(tagRecv); err != nil {
			s.unshake(ss, err)
		}
	case upgraded:
		if err := ss.conn.RecvMulti(tagRecv); err != nil {
			s.ended(ss, err)
		}
	}
}

// shakeTLS reads the request of a WebSocket client over TLS (wss), on its
// reader goroutine, and handles it. It reports whether the client was
// upgraded (and joined): its reader then goes on as any TLS client's.
func (s *Server) shakeTLS(ss *session) bool {
	tc, ws := ss.ext.tls.tc, ss.ext.ws
	if err := tc.SetReadDeadline(time.Now().Add(s.cfg.WSHandshakeTimeout)); err != nil {
		s.unshake(ss, err)
		return false
	}
	var b [2048]byte
	for {
		n, err := tc.Read(b[:])
		ws.req = append(ws.req, b[:n]...)
		if err != nil {
			s.unshake(ss, err)
			return false
		}
		var t tally
		st := s.request(ss, &t)
		s.shards[len(s.shards)-1].add(&t)
		switch st {
		case upgraded:
			return true
		case answered:
			return false
		}
	}
}

// What request made of a request.
const (
	needMore = iota // its header is not whole yet
	answered        // with an error, or the page: the connection is closing
	upgraded        // to WebSocket: the client is in the room
)

// request handles the HTTP request in ss.ext.ws.req, once its header is
// whole: it answers it (and closes the connection gracefully), or
// upgrades it and joins ss to the room, counting what it relays (frames
// that came with the request) in t.
func (s *Server) request(ss *session, t *tally) int {
	ws := ss.ext.ws
	end := bytes.Index(ws.req, []byte("\r\n\r\n"))
	if end < 0 || end > wsMaxRequest {
		if len(ws.req) > wsMaxRequest {
			s.answer(ss, http.StatusRequestHeaderFieldsTooLarge, "request header over 8KiB")
			return answered
		}
		return needMore
	}
	end += 4
	// The request is whole: a reader of its size, not bufio's 4 KiB.
	req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(ws.req[:end]), end))
	if err != nil {
		s.answer(ss, http.StatusBadRequest, "malformed request")
		return answered
	}
	switch path := req.URL.Path; {
	case path == "/" || path == "/index.html":
		s.servePage(ss, req)
	case path == "/ws":
		if s.upgrade(ss, req, ws.req[end:], t) {
			return upgraded
		}
	default:
		s.answer(ss, http.StatusNotFound, "not found")
	}
	return answered
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
	ss.send(m) // fails only once the connection is closed: nothing to tell
	m.Release()
}

// upgrade checks a WebSocket upgrade request and, if it is one the server
// takes, answers 101 and joins the client to the room, and reports
// whether it did. rest is what the client sent after the request, frames
// already.
func (s *Server) upgrade(ss *session, req *http.Request, rest []byte, t *tally) bool {
	h := req.Header
	switch {
	case req.Method != http.MethodGet:
		s.answer(ss, http.StatusMethodNotAllowed, "a WebSocket upgrade is a GET")
		return false
	case !hasToken(h, "Connection", "upgrade") || !hasToken(h, "Upgrade", "websocket"):
		s.answerWith(ss, http.StatusUpgradeRequired, "Upgrade: websocket\r\n", "this is a WebSocket endpoint: connect with a WebSocket client")
		return false
	case h.Get("Sec-WebSocket-Version") != "13":
		s.answerWith(ss, http.StatusUpgradeRequired, "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 only")
		return false
	case !s.originAllowed(req):
		s.answer(ss, http.StatusForbidden, "origin "+strconv.Quote(h.Get("Origin"))+" not allowed (--ws-origin)")
		return false
	}
	key := h.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		s.answer(ss, http.StatusBadRequest, "Sec-WebSocket-Key is not 16 bytes in base64")
		return false
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
	var err error
	if ss.secure {
		err = ss.ext.tls.tc.SetReadDeadline(time.Time{})
	} else {
		err = ss.conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		s.unshake(ss, err)
		return false
	}
	s.handshaking.Add(-1)
	if !s.join(ss) {
		return false
	}
	if len(rest) > 0 { // relayed whole: there is no receive to hold
		in, at, pause := s.relayWS(ss, rest, t)
		for pause && at < len(in) {
			at, pause = s.relayAll(ss, in, at, t)
		}
	}
	return true
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

// receivedWS handles a receive completion c of an upgraded WebSocket
// client: as received does a TCP client's, through relayWS.
func (s *Server) receivedWS(ss *session, c *cport.Completion, t *tally) {
	in, at, pause := s.relayWS(ss, c.Buf, t)
	if pause {
		ss.flow.heldAt = heldAt(at, in)
		s.pause(ss, c) // c is released when ss may go on
		return
	}
	c.Release()
}

// relayWS handles bytes b received from an upgraded WebSocket client: it
// decodes them, answers its pings and its close, and relays the messages
// decoded, in, as relayAll does, returning where it stopped and whether
// ss is to be paused (in then stays in its decoder until the session
// goes on). A client that broke the protocol is killed, one that closed
// is answered and closed gracefully: neither is paused.
func (s *Server) relayWS(ss *session, b []byte, t *tally) (in []byte, at int, pause bool) {
	d := &ss.ext.ws.dec
	d.out = d.out[:0]
	err := d.decode(b)
	if len(d.reply) > 0 && !d.closed {
		s.reply(ss, d.reply)
		d.reply = d.reply[:0]
	}
	at, pause = s.relayAll(ss, d.out, 0, t)
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
	case pause:
		return d.out, at, true
	}
	if cap(d.out) > wsKeep {
		d.out = nil
	}
	return d.out, len(d.out), false
}

// msgOf returns run, whole messages that ss sent, as the server's framing
// has them: a WebSocket client's are in Frame framing, as its decoder
// wrote them.
func (s *Server) msgOf(ss *session, run []byte) *cport.Msg {
	if !ss.web || s.cfg.Framing == Frame {
		return cport.MsgOf(run)
	}
	n := 0
	messages(Frame, run, func(p []byte) {
		n += len(p)
		if s.cfg.Framing == Line {
			n++ // its newline
		}
	})
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
			ss.send(bye) // through its writer, for a wss client
		}
	})
	bye.Release()
}
