package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"cport.dev/cport/chat"
)

// How cport load's commands choose the framing they check messages in.
//
// cport serve's default framing is raw: each read is relayed as it is, with
// no message boundaries. load's checks need boundaries. Without --framing,
// load probes the servers first (probeFraming) and runs their framing, or,
// against a raw server, lines: a raw server relays whole lines as long as
// each of its reads holds whole lines, which closed-loop load, with a few
// messages in flight per sender, keeps true on loopback; if a read cuts a
// line anyway, only the lines around the cut are corrupted, where a cut
// frame header would garble the rest of the stream. With --framing, no
// probe runs first. Either way, when the run fails, the sentence of
// framingNote names a mismatch, if that is what failed.

// A framingChoice is the framing a load command runs, and what it knows of
// the servers' own.
type framingChoice struct {
	addrs  []string
	dial   dialFunc     // how the probe connects (that of note does not wait for a server: the run has met it, or not)
	used   chat.Framing // what load sends and checks
	server chat.Framing // the servers' framing, if known
	known  bool
}

// chooseFraming returns the framing to run: the one named (frame or line),
// or for auto the servers', found out by probing every address of addrs;
// against a raw server it chooses line, and says so on w (nil: say
// nothing). cmd names the command; the probe connects with dial, waiting
// for a server that does not listen yet (patient).
func chooseFraming(ctx context.Context, dial dialFunc, cmd, name string, addrs []string, w io.Writer) (*framingChoice, error) {
	fc := &framingChoice{addrs: addrs, dial: dial}
	if name != "auto" {
		f, err := chat.ParseFraming(name)
		fc.used = f
		return fc, err
	}
	server, err := serversFraming(ctx, patient(dial, w), addrs) // the server may be starting
	if err != nil {
		return nil, err
	}
	fc.server, fc.known = server, true
	fc.used = server
	if server == chat.Raw {
		fc.used = chat.Line
		if w != nil {
			fmt.Fprintf(w, "%s: the server relays raw reads (cport serve's default framing): sending lines, which arrive whole as long as each read of the server holds whole lines; cport serve --framing line makes sure\n", cmd)
		}
	}
	return fc, nil
}

// framingAuto is the help of a load command's --framing.
const framingAuto = "the server's `framing`: frame, line, or auto: found out by a probe before the run (against a raw server, cport serve's default, load sends lines)"

// serversFraming probes each server of addrs; they must agree.
func serversFraming(ctx context.Context, dial dialFunc, addrs []string) (chat.Framing, error) {
	var first chat.Framing
	for i, a := range addrs {
		f, err := probeFraming(ctx, dial, a)
		if err != nil {
			return 0, fmt.Errorf("finding out the server's framing (--framing skips this): %w", err)
		}
		if i > 0 && f != first {
			return 0, fmt.Errorf("the servers differ in framing: %s has %s, %s has %s", addrs[0], first, a, f)
		}
		first = f
	}
	return first, nil
}

// note returns the sentence that names a framing mismatch, the likely cause
// of a failed run, or "" if there is none: the servers' framing is probed
// now if it was not before (a probe that fails says nothing).
func (fc *framingChoice) note(ctx context.Context, cmd string) string {
	if !fc.known {
		f, err := serversFraming(ctx, fc.dial, fc.addrs)
		if err != nil {
			return ""
		}
		fc.server, fc.known = f, true
	}
	switch fc.server {
	case fc.used:
		return ""
	case chat.Raw:
		return fmt.Sprintf("%s: the server's messages do not parse as %s framing: it relays raw reads, which can cut messages apart: start it with --framing %s", cmd, fc.used, fc.used)
	}
	return fmt.Sprintf("%s: the server's messages do not parse as %s framing: start it with --framing %s, or pass --framing %s", cmd, fc.used, fc.used, fc.server)
}

// withNote returns err, after writing fc's note on w if the run failed
// (err is not nil) for some other reason than an interruption. It takes
// the "load: " off the load package's errors: the command names itself.
func (fc *framingChoice) withNote(w io.Writer, cmd string, err error) error {
	if err == nil {
		return nil
	}
	if !errors.Is(err, context.Canceled) {
		if s := fc.note(context.Background(), cmd); s != "" {
			fmt.Fprintln(w, s)
		}
	}
	if msg, ok := strings.CutPrefix(err.Error(), "load: "); ok && !errors.Is(err, errChecks) {
		return errors.New(msg)
	}
	return err
}
