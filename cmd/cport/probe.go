package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"cport.dev/cport/chat"
)

// Finding out a chat server's framing, on connections of the probe's own.
//
// Every framing relays the bytes it is sent unchanged, so what comes back
// to a sender is always a beginning of what it sent: the three framings
// differ in where they cut, which one connection cannot see, and in what
// they refuse, which it can. The probe asks two questions whose every answer
// is something that arrives (bytes or the end of the connection), never the
// absence of something within a time, so that a slow machine cannot make
// it guess wrong:
//
//  1. A line of text, probeLine. Its first four bytes, read as a frame
//     header, announce about 1.6 GB, more than any frame server takes
//     (cport serve's --max-message is 16MiB at most): a frame server resets
//     the connection. A line or raw server sends the line back.
//  2. Text without a newline, more and more of it. A raw server sends the
//     first bytes back at once. A line server holds them, waiting for the
//     end of the line, and resets the connection once they pass its
//     --max-message.
//
// The probe's messages reach whoever else is in the room, as any client's
// would: they are printable text.

// probeLine is the first question; it is shorter than load's smallest
// message, so that a server that can be loaded at all takes it whole.
const probeLine = "cport load: framing probe\n"

// probeText begins the second question; probeFill continues it.
const (
	probeText = "cport load: framing probe, no newline: "
	probeFill = "................................................................"
)

// probeMax is how much text without a newline the second question sends at
// most: past cport serve's largest --max-message.
const probeMax = maxMessage + 1

// probeTimeout bounds the whole probe: a server that neither answers nor
// closes in that time does not echo.
const probeTimeout = 10 * time.Second

// probeFraming returns the framing of the chat server at addr, connecting
// with dial.
func probeFraming(ctx context.Context, dial dialFunc, addr string) (chat.Framing, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	echoed, err := probeAsk(ctx, dial, addr, []byte(probeLine), nil)
	switch {
	case err != nil:
		return 0, err
	case !echoed:
		return chat.Frame, nil
	}
	// A line or a raw server: text without a newline tells them apart.
	// Its pieces grow, a little at a time, so that a raw server, which
	// answers the first, is not sent much.
	size := 1 << 10
	more := func(sent int) []byte {
		if sent >= probeMax {
			return nil
		}
		n := min(size, probeMax-sent)
		size *= 2
		return bytes.Repeat([]byte(probeFill), n/len(probeFill)+1)[:n]
	}
	echoed, err = probeAsk(ctx, dial, addr, []byte(probeText), more)
	switch {
	case err != nil:
		return 0, err
	case echoed:
		return chat.Raw, nil
	}
	return chat.Line, nil
}

// probeStep is how long probeAsk waits for an answer before it sends the
// next piece: it sets the pace, not the outcome.
const probeStep = 50 * time.Millisecond

// probeAsk connects to addr, sends first, then, as long as nothing has come
// back, the pieces more returns (nil: no more), one every probeStep. It
// reports whether first came back (echoed) or the server ended the
// connection first (!echoed). An error is a connection that could not be
// made, or no answer by ctx's end.
func probeAsk(ctx context.Context, dial dialFunc, addr string, first []byte, more func(sent int) []byte) (echoed bool, err error) {
	conn, err := dial(ctx, addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	answer := make(chan bool, 1) // true: first came back; false: the connection ended
	go func() {
		// Others in the room may talk meanwhile: look for first in
		// everything that arrives, keeping only the bytes that could
		// still begin it.
		var seen []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, first) {
				answer <- true
				return
			}
			if err != nil {
				answer <- false
				return
			}
			if keep := len(first) - 1; len(seen) > keep {
				seen = append(seen[:0], seen[len(seen)-keep:]...)
			}
		}
	}()
	wrote := make(chan error, 1)
	go func() {
		piece, sent := first, 0
		for piece != nil {
			if _, err := conn.Write(piece); err != nil {
				wrote <- err // the server ended the connection: the reader sees it too
				return
			}
			sent += len(piece)
			if more == nil {
				break
			}
			t := time.NewTimer(probeStep)
			select {
			case <-ctx.Done():
				t.Stop()
				wrote <- nil
				return
			case <-t.C:
			}
			piece = more(sent)
		}
		wrote <- nil
	}()
	select {
	case echoed = <-answer:
	case <-ctx.Done():
		conn.SetDeadline(time.Now())
		<-answer
	}
	conn.SetDeadline(time.Now()) // ends the writer, if still at it
	<-wrote
	if ctx.Err() != nil && !echoed {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return false, fmt.Errorf("the server at %s neither sent back the framing probe nor closed the connection within %v: is it a cport chat server, started without --no-echo?", addr, probeTimeout)
		}
		return false, ctx.Err()
	}
	return echoed, nil
}
