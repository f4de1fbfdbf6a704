package chat

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"cport.dev/cport"
)

// TLS clients (Config.TLS) speak through crypto/tls on their connection's
// cport.NetConn. crypto/tls reads and writes by blocking, so a TLS client
// has two goroutines of its own. Its reader handshakes, then reads,
// decrypts and relays what it reads as a worker relays a receive
// completion (relayAll: the same limits, the same pause of a sender too
// far ahead, the reader then waiting to be resumed). Its writer encrypts
// and writes what the fan-out queued to it. The fan-out is unchanged: a
// relay queues one shared plaintext message on every session, TLS or not,
// and never blocks; a TLS client's queue is counted against SendQueue and
// WriteTimeout as a plain client's is, and a writer takes the messages
// queued to it in one batch and writes them as few records as they fill.
//
// Lifetimes. The reader runs from the accept to the end of the session's
// receive (Server.ended); the writer from the handshake until a graceful
// close has written what was queued (then close_notify and FIN), or a
// write fails (the connection was reset, aborted or the port closed). The
// server counts both in tlsWG, and lists each session whose writer runs
// in tlsLive, for Shutdown's pending bytes.

// A TLS record's plaintext at most: the size of the buffers of recPool.
const tlsReadSize = 16 << 10

// The idle reader's own buffer (see readTLS).
const tlsSmallRead = 512

// errTLSClosed is what a send to a TLS client whose writer has ended (or
// is closing) fails with.
var errTLSClosed = errors.New("chat: TLS connection closed")

// tlsSide is a TLS client's TLS: the tls.Conn, and its writer's queue.
type tlsSide struct {
	tc *tls.Conn

	mu      sync.Mutex
	more    sync.Cond    // on mu: messages queued, or the end
	q       []*cport.Msg // queued, a reference each
	closing bool         // a graceful close: write what is queued, then close
	dead    bool         // the writer ended: nothing more is queued
	bytes   atomic.Int64 // plaintext bytes queued or being written

	// resume wakes the reader paused by the flow goroutine (flow.go);
	// held is what the paused reader read, owned like session.split.
	resume chan struct{}
	held   []byte
}

// queued returns the plaintext bytes queued or being written.
func (t *tlsSide) queued() int { return int(t.bytes.Load()) }

// send queues m, taking a reference, unless the writer has ended or the
// session is closing.
func (t *tlsSide) send(m *cport.Msg) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead || t.closing {
		return errTLSClosed
	}
	m.Ref()
	t.q = append(t.q, m)
	t.bytes.Add(int64(m.Len()))
	if len(t.q) == 1 {
		t.more.Signal()
	}
	return nil
}

// close asks the writer to write what is queued, then to close the
// connection gracefully.
func (t *tlsSide) close() {
	t.mu.Lock()
	t.closing = true
	t.more.Signal()
	t.mu.Unlock()
}

// startTLS begins a TLS client's session: its reader handshakes, joins the
// session to the room and relays what it reads.
func (s *Server) startTLS(ss *session) {
	if max := int64(s.cfg.MaxConns); max > 0 && s.stats.active.Load()+s.handshaking.Load() >= max {
		s.refuse(ss) // before a handshake's cost
		return
	}
	s.handshaking.Add(1)
	s.tlsWG.Add(1)
	go s.serveTLS(ss)
}

// serveTLS is a TLS client's reader.
func (s *Server) serveTLS(ss *session) {
	defer s.tlsWG.Done()
	t, err := s.handshake(ss)
	if err != nil || !ss.web { // a WebSocket client counts on until its request is answered
		s.handshaking.Add(-1)
	}
	if err != nil {
		s.stats.handshakeFailures.Add(1)
		s.events.add(evTLSHandshake, addrString(ss.conn.RemoteAddr()), slog.String("err", err.Error()))
		s.leave(ss)
		ss.conn.Abort()
		return
	}
	if ss.ext == nil {
		ss.ext = new(sessionExt)
	}
	ss.ext.tls = t
	ss.secure = true
	s.tlsMu.Lock()
	s.tlsLive[ss] = struct{}{}
	s.tlsMu.Unlock()
	s.tlsWG.Add(1)
	go s.writeTLS(ss)
	if ss.web {
		if !s.shakeTLS(ss) {
			return
		}
	} else if !s.join(ss) {
		return
	}
	s.readTLS(ss)
}

// handshake adapts ss's connection to net.Conn and runs the server side
// of the TLS handshake on it, within Config.TLSHandshakeTimeout.
func (s *Server) handshake(ss *session) (*tlsSide, error) {
	nc, err := ss.conn.NetConn()
	if err != nil {
		return nil, err
	}
	tc := tls.Server(nc, s.cfg.TLS)
	if err := nc.SetDeadline(time.Now().Add(s.cfg.TLSHandshakeTimeout)); err != nil {
		return nil, err
	}
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	t := &tlsSide{tc: tc, resume: make(chan struct{}, 1)}
	t.more.L = &t.mu
	return t, nil
}

// readTLS reads, decrypts and relays what a TLS client sends, until its
// stream ends or fails: a worker's received, on the reader's goroutine.
//
// An idle client's reader waits in a read of tlsSmallRead bytes; a read
// that fills them is followed by one into a record-sized buffer from
// recPool, which takes the rest of the record crypto/tls has decrypted
// (or waits for the next one, holding the buffer, if the record ended
// there: rare, and bounded to one buffer a client).
func (s *Server) readTLS(ss *session) {
	t := ss.ext.tls
	var small [tlsSmallRead]byte
	sh := &s.shards[len(s.shards)-1]
	var tl tally
	for {
		buf := small[:]
		n, err := t.tc.Read(buf)
		var rec *[]byte
		if n == len(small) && err == nil {
			rec = recPool.Get().(*[]byte)
			buf = append((*rec)[:0], small[:n]...)
			var m int
			m, err = t.tc.Read(buf[n:cap(buf)])
			n += m
			buf = buf[:n]
		}
		if n > 0 {
			s.touch(ss)
			tl.bytesIn += int64(n)
			in := buf[:n]
			var at int
			var pause bool
			if ss.web {
				in, at, pause = s.relayWS(ss, in, &tl)
			} else {
				at, pause = s.relayAll(ss, in, 0, &tl)
			}
			sh.add(&tl)
			if pause {
				ss.flow.heldAt = heldAt(at, in)
				t.held = in
				s.hold(ss)
				<-t.resume // from the flow goroutine, which owned ss meanwhile
			}
		}
		if rec != nil {
			*rec = buf[:0]
			recPool.Put(rec)
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				// The client ended its TCP stream without a close_notify
				// (a half-close, or a client that left): messages are
				// framed, so no truncation goes unnoticed (a partial one
				// is dropped as at any end of stream).
				err = io.EOF
			}
			ss.dropOut()
			s.ended(ss, err)
			return
		}
	}
}

// writeTLS is a TLS client's writer: it encrypts and writes what the
// fan-out queued, a batch at a time, until a graceful close has written
// everything (it then sends close_notify and closes the connection) or a
// write fails.
func (s *Server) writeTLS(ss *session) {
	defer s.tlsWG.Done()
	t := ss.ext.tls
	var (
		batch []*cport.Msg
		err   error
	)
	for err == nil {
		t.mu.Lock()
		for len(t.q) == 0 && !t.closing {
			t.more.Wait()
		}
		batch, t.q = t.q, batch[:0]
		t.mu.Unlock()
		if len(batch) == 0 {
			break // closing, everything written
		}
		rec := recPool.Get().(*[]byte)
		err = writeBatch(t, batch, rec)
		recPool.Put(rec)
		clear(batch)
	}
	t.mu.Lock()
	t.dead = true
	left := t.q
	t.q = nil
	t.mu.Unlock()
	for _, m := range left {
		m.Release()
	}
	t.bytes.Store(0)
	if err == nil {
		t.tc.CloseWrite() // close_notify: bounded by crypto/tls (5 s)
		ss.conn.Close()
	} else {
		ss.expire() // a half-closed session has no receive to end it
	}
	s.tlsMu.Lock()
	delete(s.tlsLive, ss)
	s.tlsMu.Unlock()
}

// recPool holds record-sized buffers: those writers copy small messages
// into, and those readers read a record's rest into. An idle TLS client
// holds none.
var recPool = sync.Pool{New: func() any { b := make([]byte, 0, tlsReadSize); return &b }}

// writeBatch encrypts and writes batch, releasing each message once it is
// copied out or written: messages smaller than a record share one, copied
// into *rec.
func writeBatch(t *tlsSide, batch []*cport.Msg, rec *[]byte) error {
	var err error
	buf := (*rec)[:0]
	write := func(b []byte) {
		if err == nil {
			_, err = t.tc.Write(b)
		}
		t.bytes.Add(-int64(len(b)))
	}
	for _, m := range batch {
		b := m.Bytes()
		if len(buf)+len(b) > tlsReadSize && len(buf) > 0 {
			write(buf)
			buf = buf[:0]
		}
		if len(b) >= tlsReadSize {
			write(b)
		} else {
			buf = append(buf, b...)
		}
		m.Release()
	}
	if len(buf) > 0 {
		write(buf)
	}
	*rec = buf[:0]
	return err
}
