package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"

	"cport.dev/cport/chat"
)

// clientDialTimeout bounds cport client's connect and TLS handshake.
const clientDialTimeout = 15 * time.Second

func runClient(fs *flag.FlagSet, args []string) error {
	addr := fs.String("addr", "127.0.0.1:25000", "server `address`")
	var framing chat.Framing
	framingVar(fs, &framing, "framing", chat.Raw, []chat.Framing{chat.Raw, chat.Line, chat.Frame}, "the server's `framing`: raw, line or frame")
	var linger time.Duration
	durationVar(fs, &linger, "linger", time.Second, false, "after standard input ends, how long to go on printing what arrives: a `duration`")
	quiet := fs.Bool("quiet", false, "print no status lines on standard error")
	plain := fs.Bool("plain", false, "on a terminal too, read lines from standard input and print messages as they come, as with a pipe (no line editor)")
	var tf tlsClientFlags
	tf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	tc, err := tf.config(fs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientDialTimeout)
	conn, err := dialTLS(tc)(ctx, *addr)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	if !*plain && term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())) {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM)
		defer signal.Stop(signals)
		tch := &terminalChat{addr: *addr, framing: framing, dial: func() (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), clientDialTimeout)
			defer cancel()
			return dialTLS(tc)(ctx, *addr)
		}}
		return runTerminal(tch, conn, signals)
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "connected to %s (%s framing); type lines to send, Ctrl+D or Ctrl+C to quit\n", conn.RemoteAddr(), framing)
	}

	received := make(chan error, 1)
	go func() { received <- printMessages(os.Stdout, conn, framing) }()
	sent := make(chan error, 1)
	go func() { sent <- sendLines(conn, os.Stdin, framing) }()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)

	select {
	case <-signals:
		return nil
	case err := <-received:
		if err == nil {
			err = errors.New("connection closed by the server")
		}
		return err
	case err := <-sent:
		if err != nil {
			return err
		}
		// Standard input ended: show what is still on its way, then leave.
		select {
		case <-time.After(linger):
		case <-signals:
		case err := <-received:
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// sendLines sends each line of r as one message in the given framing.
func sendLines(w io.Writer, r io.Reader, f chat.Framing) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var msg []byte
	for sc.Scan() {
		msg = appendMessage(msg[:0], sc.Bytes(), f)
		if _, err := w.Write(msg); err != nil {
			return err
		}
	}
	return sc.Err()
}

// appendMessage appends line (without its newline) to msg as one message
// in framing f.
func appendMessage(msg, line []byte, f chat.Framing) []byte {
	if f == chat.Frame {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(line)))
		return append(msg, line...)
	}
	return append(append(msg, line...), '\n') // raw and line: as a terminal sends it
}

// printMessages copies what arrives to w: raw and line messages as they
// are, frames as their payload on a line of its own. It returns nil when
// the server closes the connection.
func printMessages(w io.Writer, r io.Reader, f chat.Framing) error {
	if f != chat.Frame {
		_, err := io.Copy(w, r)
		return err
	}
	br := bufio.NewReader(r)
	var hdr [4]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if int64(n) > 1<<30 {
			return fmt.Errorf("frame of %d bytes: not a cport frame server?", n)
		}
		payload = append(payload[:0], make([]byte, n)...)
		if _, err := io.ReadFull(br, payload); err != nil {
			return err
		}
		if len(payload) == 0 || payload[len(payload)-1] != '\n' {
			payload = append(payload, '\n')
		}
		if _, err := w.Write(payload); err != nil {
			return err
		}
	}
}
