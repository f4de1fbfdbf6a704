package cport

import (
	"net/netip"
	"strconv"

	"cport.dev/cport/internal/engine"
)

// Op names the kind of operation a completion reports.
type Op uint8

// The operations.
const (
	OpAccept   Op = iota + 1 // a connection was accepted: Completion.Conn is new
	OpRecv                   // bytes were received, or the receive ended with Err
	OpSend                   // a message was written whole, or the send failed
	OpPost                   // a completion posted with Port.Post
	OpDial                   // a connection was dialed (Port.Dial): Completion.Conn is new, or Err says why not
	OpTimer                  // a timer of Port.Timer expired: Key and Tag are the timer's
	OpRecvFrom               // a datagram was received (PacketConn.RecvFrom): Buf, N and its sender in Addr; or Err
	OpSendTo                 // a datagram was sent (PacketConn.SendTo) to Addr, or Err says why not
)

var opNames = [...]string{OpAccept: "accept", OpRecv: "recv", OpSend: "send", OpPost: "post", OpDial: "dial", OpTimer: "timer", OpRecvFrom: "recvfrom", OpSendTo: "sendto"}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// A Completion reports one finished operation, like the four results of
// GetQueuedCompletionStatus.
//
// Receives: Buf holds the N bytes received, lent by the port until Release.
// A graceful close by the peer completes a receive with Err == io.EOF (the
// tutorial's zero-byte receive); a reset with an error that errors.Is matches
// to syscall.ECONNRESET; a receive pending when its connection is closed with
// ErrCanceled. A completion with an error is the last of its receive.
//
// Sends: N is the length of the message, all of it written, or Err says why
// not. Sends started with Conn.SendQuiet post no completion; see there.
//
// Dials: Conn is the new connection, or Err says why there is none (see
// Port.Dial).
//
// Timers (Port.Timer): Key and Tag are the timer's; the other fields are
// zero.
//
// Deadlines (Conn.SetReadDeadline, Conn.SetWriteDeadline) fail the operations they bound with an *OpError that errors.Is matches
// to os.ErrDeadlineExceeded.
//
// Datagrams (PacketConn): a receive completes with op OpRecvFrom, the
// datagram in Buf (lent until Release, as a Conn's receive) and its sender
// in Addr; a send with op OpSendTo, its destination in Addr. Packet is the
// socket, Conn nil.
//
// Conn.Value returns the user data attached to the connection
// (Conn.SetValue): IOCP's completion key, beside the number in Key.
type Completion struct {
	Op       Op
	gen      uint32         // OpRecv with a buffer: the lending's generation, checked by Release
	Key      uint64         // the completion key of Conn (or Listener, for accepts; Dial's key; Packet's); Post's or the Timer's key
	Tag      uint64         // the tag the operation was started with; Post's or the Timer's tag
	N        int            // bytes received or sent; Post's count
	Buf      []byte         // OpRecv: the bytes received, Buf[:N]; nil otherwise
	Err      error          // nil on success
	Conn     *Conn          // the connection (OpAccept, OpDial: the new one)
	Listener *Listener      // OpAccept: the listener that accepted
	Packet   *PacketConn    // OpRecvFrom, OpSendTo: the datagram socket
	Addr     netip.AddrPort // OpRecvFrom: the datagram's sender; OpSendTo: its destination

	buf *engine.Buf // the engine's buffer behind Buf, returned by Release
}

// Release gives a receive's buffer back to the port, and lets the next
// receive of a multishot Conn.RecvMulti complete: a connection has at most one
// unreleased receive completion, so that its data is handled in order. Call
// it once for every OpRecv completion, as soon as Buf is no longer needed;
// for other completions it does nothing.
//
// The next completion of the connection may go to another worker as soon
// as Release returns: send what a receive calls for before releasing it
// when the order matters (an echo before the end of stream that closes the
// connection).
//
// Release sets c.Buf to nil, and releasing the same c again does nothing.
// Releasing a copy of a completion whose buffer was already released
// panics: the buffer may already hold another receive's bytes, and giving
// it back twice would hand it to two receives at once.
func (c *Completion) Release() {
	if c.Op != OpRecv && c.Op != OpRecvFrom || c.buf == nil {
		return // no buffer lent: an error, not a receive, or released
	}
	b, gen := c.buf, c.gen
	c.buf, c.Buf = nil, nil
	if c.Op == OpRecvFrom {
		c.Packet.recvReleased(b, gen)
		return
	}
	c.Conn.recvReleased(b, gen)
}
