package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"cport.dev/cport/chat"
)

// cport client on a terminal: a line editor that keeps what the user is
// typing on the last lines of the screen while messages scroll above it.
// The terminal is in raw mode: the editor echoes what is typed, and every
// message printed first erases the input lines, then draws them again
// below it. A line has no length limit (the terminal's canonical mode cut
// one at 4,095 bytes), and a paste (bracketed by the terminal) arrives
// whole, each of its lines a message.

// An editor is the input line and the screen it is drawn on.
type editor struct {
	mu     sync.Mutex
	out    io.Writer
	width  func() int // the terminal's columns
	prompt string
	line   []byte // typed, not yet sent
	esc    []byte // an escape sequence being read
	paste  bool   // inside a bracketed paste
}

// Bracketed paste on and off (xterm): the terminal marks a paste with
// ESC [ 200 ~ and ESC [ 201 ~.
const (
	pasteOn  = "\x1b[?2004h"
	pasteOff = "\x1b[?2004l"
)

// feed takes the bytes the terminal sent and returns the lines entered, in
// order, and whether the user asked to quit (the lines before it count).
func (e *editor) feed(b []byte) (lines [][]byte, quit bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var echo bytes.Buffer
	for len(b) > 0 {
		c := b[0]
		b = b[1:]
		if len(e.esc) > 0 || c == 0x1b {
			e.escape(c)
			continue
		}
		switch {
		case c == '\r' || c == '\n':
			lines = append(lines, bytes.Clone(e.line))
			e.line = e.line[:0]
			echo.WriteString("\r\n" + e.prompt)
			if c == '\r' && len(b) > 0 && b[0] == '\n' {
				b = b[1:]
			}
		case c == 0x03: // Ctrl+C
			return lines, true
		case c == 0x04: // Ctrl+D
			if len(e.line) == 0 {
				return lines, true
			}
		case c == 0x7f || c == 0x08: // backspace
			if len(e.line) > 0 {
				_, n := utf8.DecodeLastRune(e.line)
				e.line = e.line[:len(e.line)-n]
				e.redrawLocked()
			}
		case c == 0x15: // Ctrl+U
			e.line = e.line[:0]
			e.redrawLocked()
		case c == '\t' || c >= 0x20:
			e.line = append(e.line, c)
			echo.WriteByte(c)
		}
	}
	if echo.Len() > 0 {
		e.out.Write(echo.Bytes())
	}
	return lines, false
}

// escape reads escape sequences: bracketed paste's marks switch paste
// mode; others (arrows, function keys) are dropped.
func (e *editor) escape(c byte) {
	e.esc = append(e.esc, c)
	switch {
	case len(e.esc) == 1:
		return // ESC
	case len(e.esc) == 2 && c != '[' && c != 'O':
		e.esc = e.esc[:0] // ESC and a key (Alt+key): dropped
		return
	case len(e.esc) == 2:
		return
	case c >= 0x40 && c <= 0x7e || len(e.esc) > 16: // a CSI's final byte
		switch string(e.esc) {
		case "\x1b[200~":
			e.paste = true
		case "\x1b[201~":
			e.paste = false
		}
		e.esc = e.esc[:0]
	}
}

// print writes msg (lines, each ending in \n) above the input line, which
// is drawn again below it.
func (e *editor) print(msg []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b bytes.Buffer
	e.eraseLocked(&b)
	b.Write(bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n")))
	b.WriteString(e.prompt)
	b.Write(e.line)
	e.out.Write(b.Bytes())
}

// status prints a line of the client's own, marked as such.
func (e *editor) status(format string, a ...any) {
	e.print([]byte("* " + fmt.Sprintf(format, a...) + "\n"))
}

// redrawLocked draws the input line again, after an edit that removed text.
func (e *editor) redrawLocked() {
	var b bytes.Buffer
	e.eraseLocked(&b)
	b.WriteString(e.prompt)
	b.Write(e.line)
	e.out.Write(b.Bytes())
}

// eraseLocked writes what erases the input lines, leaving the cursor at
// the start of the first.
func (e *editor) eraseLocked(b *bytes.Buffer) {
	n := utf8.RuneCountInString(e.prompt) + utf8.RuneCount(e.line)
	w := e.width()
	if w <= 0 {
		w = 80
	}
	b.WriteByte('\r')
	if up := (n - 1) / w; n > 0 && up > 0 {
		b.WriteString("\x1b[" + strconv.Itoa(up) + "A")
	}
	b.WriteString("\x1b[J")
}

// lineWriter passes what is written to it to an editor's print, a whole
// line at a time (raw framing: a read's worth at a time).
type lineWriter struct {
	ed      *editor
	raw     bool
	pending []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	i := bytes.LastIndexByte(w.pending, '\n')
	if w.raw && len(w.pending) > 0 {
		w.pending = append(w.pending, '\n')
		i = len(w.pending) - 1
		if len(w.pending) > 1 && w.pending[len(w.pending)-2] == '\n' {
			w.pending = w.pending[:len(w.pending)-1]
			i--
		}
	}
	if i >= 0 {
		w.ed.print(w.pending[:i+1])
		w.pending = append(w.pending[:0], w.pending[i+1:]...)
	}
	return len(p), nil
}

// A terminalChat is cport client's session on a terminal: it survives the
// server going away, connecting again with backoff.
type terminalChat struct {
	ed      *editor
	addr    string
	framing chat.Framing
	dial    func() (net.Conn, error)
}

// Backoff of the reconnection, from its first wait to its longest.
const (
	reconnectFirst = 500 * time.Millisecond
	reconnectMost  = 5 * time.Second
)

// run chats on conn, and on the connections made after it, reading keys
// from in, until the user quits (Ctrl+C, Ctrl+D on an empty line, the end
// of in) or stop says so.
func (tc *terminalChat) run(conn net.Conn, in io.Reader, stop <-chan os.Signal) error {
	keys := make(chan []byte)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(keys)
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				select {
				case keys <- bytes.Clone(buf[:n]):
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	received := make(chan error, 1)
	receive := func(c net.Conn) {
		go func() {
			received <- printMessages(&lineWriter{ed: tc.ed, raw: tc.framing == chat.Raw}, c, tc.framing)
		}()
	}
	receive(conn)
	reconnected := make(chan net.Conn)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var msg []byte
	for {
		select {
		case b, ok := <-keys:
			if !ok {
				return nil
			}
			lines, quit := tc.ed.feed(b)
			for _, l := range lines {
				if conn == nil {
					tc.ed.status("not connected: %d bytes not sent", len(l))
					continue
				}
				msg = appendMessage(msg[:0], l, tc.framing)
				if _, err := conn.Write(msg); err != nil {
					tc.ed.status("not sent: %v", err)
				}
			}
			if quit {
				return nil
			}
		case err := <-received:
			conn.Close()
			conn = nil
			why := "closed by the server"
			if err != nil {
				why = err.Error()
			}
			tc.ed.status("connection lost (%s): connecting again", why)
			go tc.reconnect(reconnected, done)
		case c := <-reconnected:
			conn = c
			receive(conn)
			tc.ed.status("connected again to %s", tc.addr)
		case <-stop:
			return nil
		}
	}
}

// reconnect dials until it succeeds, waiting longer after each failure,
// and hands the connection over, unless done is closed first.
func (tc *terminalChat) reconnect(to chan<- net.Conn, done <-chan struct{}) {
	wait := reconnectFirst
	for {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-done:
			t.Stop()
			return
		}
		c, err := tc.dial()
		if err == nil {
			select {
			case to <- c:
			case <-done:
				c.Close()
			}
			return
		}
		wait = min(2*wait, reconnectMost)
	}
}

// runTerminal runs cport client's terminal session on conn: the terminal
// in raw mode with bracketed paste until it ends.
func runTerminal(tc *terminalChat, conn net.Conn, stop <-chan os.Signal) error {
	inFd, outFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	old, err := term.MakeRaw(inFd)
	if err != nil {
		return fmt.Errorf("the terminal: %w", err)
	}
	defer term.Restore(inFd, old)
	tc.ed = &editor{out: os.Stdout, prompt: "> ", width: func() int {
		w, _, err := term.GetSize(outFd)
		if err != nil {
			return 80
		}
		return w
	}}
	io.WriteString(os.Stdout, pasteOn)
	defer io.WriteString(os.Stdout, pasteOff+"\r\n")
	tc.ed.status("connected to %s (%s framing): type a line and Enter to send it; Ctrl+D or Ctrl+C quits", tc.addr, tc.framing)
	return tc.run(conn, os.Stdin, stop)
}
