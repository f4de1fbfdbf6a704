package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// parse parses args into fs. Help (-h, --help) goes to fs's output; a bad
// command line is one line there, in usageErr's voice, and errUsage; so
// are arguments after the flags.
func parse(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr(fs, "unexpected arguments: %q", fs.Args())
	}
	return nil
}

// parseArgs is parse for a command that takes arguments after its flags.
func parseArgs(fs *flag.FlagSet, args []string) error {
	// The flag package prints its own errors and the whole usage: keep
	// what it prints for -h only.
	out := fs.Output()
	var said bytes.Buffer
	fs.SetOutput(&said)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		out.Write(said.Bytes())
		return err
	case err != nil:
		var bad error
		fs.VisitAll(func(f *flag.Flag) {
			if v, ok := f.Value.(failer); ok && v.failed() != nil && bad == nil {
				bad = usageErr(fs, "--%s: %v", f.Name, v.failed())
			}
		})
		if bad != nil {
			return bad
		}
		return usageErr(fs, "%s", flagError(fs, err))
	}
	return nil
}

// The flag package's errors, to say in the voice of the others.
var (
	noSuchFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	needsValue = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	badBool    = regexp.MustCompile(`^invalid boolean value "(.*)" for -+(\S+): `)
	badValue   = regexp.MustCompile(`^invalid value "(.*)" for flag -+(\S+): (.*)$`)
	badSyntax  = regexp.MustCompile(`^bad flag syntax: (.*)$`)
)

// flagError says err, an error of fs.Parse, as "--flag: what is wrong".
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if m := noSuchFlag.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s: no such flag (%s -h lists them)", m[1], fs.Name())
	}
	if m := needsValue.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s: needs a value", m[1])
	}
	if m := badBool.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s: must be true or false, got %s", m[2], m[1])
	}
	if m := badValue.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s: %s, got %s", m[2], m[3], m[1])
	}
	if m := badSyntax.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s: not a flag", m[1])
	}
	return msg
}

// commandUsage writes c's help to fs's output: its synopsis, its
// description, its subcommands and its flags.
func commandUsage(fs *flag.FlagSet, c *command) {
	w := fs.Output()
	args := c.args
	if args == "" {
		args = "[flags]"
	}
	fmt.Fprintf(w, "Usage: %s %s\n", fs.Name(), args)
	for _, s := range c.subs {
		if !s.hidden {
			fmt.Fprintf(w, "       %s %s [flags]\n", fs.Name(), s.name)
		}
	}
	doc := c.doc
	if doc == "" {
		doc = strings.ToUpper(c.short[:1]) + c.short[1:] + "."
	}
	fmt.Fprintf(w, "\n%s\n", doc)
	if len(c.subs) > 0 {
		fmt.Fprint(w, "\nSubcommands:\n\n")
		for _, s := range c.subs {
			if !s.hidden {
				fmt.Fprintf(w, "  %-8s %s\n", s.name, s.short)
			}
		}
		fmt.Fprintf(w, "\n\"cport help %s <subcommand>\" describes each.\n", c.name)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
}

// printFlags writes fs's flags as flag.PrintDefaults does, but with two
// dashes, as the commands' help and errors name them: each flag, its
// placeholder (the word in backquotes in its usage), then its usage and
// its default, if not a zero.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		var b strings.Builder
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			b.WriteString(" " + name)
		}
		b.WriteString("\n    \t")
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		if !zeroDefault(f) {
			if fmt.Sprintf("%T", f.Value) == "*flag.stringValue" {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(&b, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintln(w, b.String())
	})
}

// zeroDefault reports whether f's default is its kind's zero, which help
// does not show.
func zeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "0s", "false":
		return true
	}
	return false
}
