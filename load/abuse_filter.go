package load

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"sync/atomic"

	"cport.dev/cport/chat"
)

// abuseSender is the sender number in the headers of the probes that
// abusers send (the flooder's messages, the first bytes of the drip's and
// the half-open clients'): a registration probe never has it.
const abuseSender = 0xffffffff

// A foreignFilter is a good client's connection during an abuse case: it
// passes on what the server sends, whole messages at a time, except the
// abusers' messages that the server relays to every client, which it drops
// and counts. They are not the good clients' to check: empty messages (of
// the zero-length flood), probes from abuseSender, and data messages of
// the churning connections (an intact header with a sender number beyond
// the good senders'). Anything else is passed on, to be checked: a
// damaged header included.
type foreignFilter struct {
	net.Conn
	br       *bufio.Reader
	framing  chat.Framing
	cd       *codec
	senders  uint32
	pass     int           // bytes of a message being passed on, still to pass
	passLine bool          // passing on a line longer than the buffer, up to its '\n'
	dropped  *atomic.Int64 // messages dropped, shared by the filters of a case
}

func newForeignFilter(conn net.Conn, cd *codec, senders, bufSize int, dropped *atomic.Int64) *foreignFilter {
	return &foreignFilter{
		Conn:    conn,
		br:      bufio.NewReaderSize(conn, bufSize),
		framing: cd.framing,
		cd:      cd,
		senders: uint32(senders),
		dropped: dropped,
	}
}

// Read returns the next bytes of the kept messages. It blocks only when
// it has nothing to return.
func (f *foreignFilter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if n := f.move(p); n > 0 {
			return n, nil
		}
		// Nothing whole is buffered: read more.
		if _, err := f.br.Peek(f.br.Buffered() + 1); err != nil {
			return 0, err
		}
	}
}

// move copies into p what the buffer holds of the kept messages, dropping
// the foreign ones, without reading the connection; it returns the bytes
// copied.
func (f *foreignFilter) move(p []byte) int {
	n := 0
	for n < len(p) {
		avail := f.br.Buffered()
		if avail == 0 {
			return n
		}
		switch {
		case f.pass > 0:
			k := min(f.pass, avail, len(p)-n)
			n += f.copyOut(p[n:], k)
			f.pass -= k
			continue
		case f.passLine:
			b, _ := f.br.Peek(avail)
			k := min(avail, len(p)-n)
			if i := bytes.IndexByte(b[:k], '\n'); i >= 0 {
				k, f.passLine = i+1, false
			}
			n += f.copyOut(p[n:], k)
			continue
		}
		// At a message boundary: find where the message ends.
		total, body, whole := f.measure(avail)
		if !whole {
			if f.pass > 0 || f.passLine {
				continue // too long to check: passed on as it comes
			}
			return n
		}
		b, _ := f.br.Peek(total)
		if f.foreign(b[body : body+f.bodyLen(total, body)]) {
			f.br.Discard(total)
			f.dropped.Add(1)
			continue
		}
		f.pass = total
	}
	return n
}

// measure looks at the message at the buffer's start, avail bytes being
// buffered: its total length and the offset of its body when it is whole
// in the buffer (whole). One longer than the buffer is passed on unchecked
// as it arrives (pass, passLine), and whole is false.
func (f *foreignFilter) measure(avail int) (total, body int, whole bool) {
	if f.framing == chat.Line {
		b, _ := f.br.Peek(avail)
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if avail == f.br.Size() {
				f.passLine = true
			}
			return 0, 0, false
		}
		return i + 1, 0, true
	}
	if avail < 4 {
		return 0, 0, false
	}
	hdr, _ := f.br.Peek(4)
	total = 4 + int(binary.BigEndian.Uint32(hdr))
	if total > f.br.Size() {
		f.pass = total
		return 0, 0, false
	}
	return total, 4, total <= avail
}

// bodyLen returns the length of a message's body: total less its framing.
func (f *foreignFilter) bodyLen(total, body int) int {
	if f.framing == chat.Line {
		return total - 1 // the '\n'
	}
	return total - body
}

// copyOut copies the next k buffered bytes into p.
func (f *foreignFilter) copyOut(p []byte, k int) int {
	b, _ := f.br.Peek(k)
	copy(p, b)
	f.br.Discard(k)
	return k
}

// foreign reports whether a message body is an abuser's.
func (f *foreignFilter) foreign(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	h, st := f.cd.parse(b)
	if st == badHeader {
		return false
	}
	switch h.kind {
	case kindProbe:
		return h.sender == abuseSender
	case kindData:
		return h.sender >= f.senders
	}
	return false
}
