// Command cport is the completion-port chat server and its tools.
//
// Usage:
//
//	cport serve [flags]        run the broadcast chat server (port 25000)
//	cport client [flags]       talk to a server from a terminal or a pipe
//	cport load [flags]         load-test a server and check every message
//	cport load idle|churn|abuse [flags]
//	cport models [flags]       measure the I/O models (docs/models)
//	cport version              print the version, the build and the engines (also: cport --version)
//	cport completion bash|zsh|fish   print a shell completion script
//	cport help [command [subcommand]]   describe a command and its flags
//
// Its command line uses the standard library's flag package, with flag
// values of its own (flags.go) that check their range, a usage printer
// that writes flags with two dashes and a placeholder (usage.go), and
// completion scripts generated from the same flag sets (completion.go): a
// CLI library (cobra, ff) would bring these too, but also a dependency and
// a second way of defining flags, for no command that needs more.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// A command is one command of cport, or a subcommand of one.
type command struct {
	name  string
	short string // one line, for the list of commands
	// args is the synopsis's arguments after the command's name.
	args string
	// doc, if any, is the command's description in its help; short
	// stands in for it otherwise.
	doc string
	// run parses args with fs and runs the command; its error, if any,
	// makes cport exit with status 1.
	run func(fs *flag.FlagSet, args []string) error
	// print, for a command whose result goes to standard output (given
	// as stdout), is called instead of run.
	print func(fs *flag.FlagSet, args []string, stdout io.Writer) error
	// subs are the command's subcommands: cport load idle.
	subs []*command
	// hidden keeps the command out of lists and completion: it is another
	// command's own (cport models serve).
	hidden bool
}

// commands is cport's command tree. It is filled in init: the completion
// command reads it.
var commands []*command

func init() {
	commands = []*command{
		{name: "serve", short: "run the broadcast chat server", doc: serveDoc, print: runServe},
		{name: "client", short: "connect to a server: send standard input, print what arrives", doc: clientDoc, run: runClient},
		{name: "load", short: "load-test a server and check every message", doc: loadDoc, run: runLoad, subs: []*command{
			{name: "idle", short: "hold idle connections: the server's memory per connection", doc: loadIdleDoc, run: runLoadIdle},
			{name: "churn", short: "connect and close, and check the server comes back", doc: loadChurnDoc, run: runLoadChurn},
			{name: "abuse", short: "attack the server and measure who pays", doc: loadAbuseDoc, run: runLoadAbuse},
		}},
		{name: "models", short: "measure the I/O models (select, poll, epoll, io_uring, goroutine per connection): docs/models", doc: modelsDoc, run: runModels, subs: []*command{
			{name: "serve", short: "the echo server of one model, run by cport models", run: runModelsServe, hidden: true},
		}},
		{name: "version", short: "print the version, the build and the engines this system allows (also: cport --version)", print: runVersion},
		{name: "completion", short: "print a completion script for bash, zsh or fish", args: "bash|zsh|fish", doc: completionDoc, print: runCompletion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "--version" || name == "-version" {
		args[0] = "version"
	}
	out := stderr
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		path, rest := find(args[1:])
		if path == nil || len(rest) > 0 {
			fmt.Fprintf(stderr, "cport help: unknown command %q\n\n", strings.Join(args[1:], " "))
			usage(stderr)
			return 2
		}
		args, out = append(names(path), "-h"), stdout
	}
	path, rest := find(args)
	if path == nil {
		fmt.Fprintf(stderr, "cport: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	c := path[len(path)-1]
	fs := flag.NewFlagSet("cport "+strings.Join(names(path), " "), flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { commandUsage(fs, c) }
	var err error
	if c.print != nil {
		err = c.print(fs, rest, stdout)
	} else {
		err = c.run(fs, rest)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
	return 1
}

// find returns the command that args begin with, as its path from the
// top (cport load idle: load, idle), and the arguments after it; a nil
// path if args begin with no command.
func find(args []string) (path []*command, rest []string) {
	list := commands
	for len(args) > 0 {
		var next *command
		for _, c := range list {
			if c.name == args[0] {
				next = c
			}
		}
		if next == nil {
			break
		}
		path, args, list = append(path, next), args[1:], next.subs
	}
	return path, args
}

// names returns the names of path's commands.
func names(path []*command) []string {
	s := make([]string, len(path))
	for i, c := range path {
		s[i] = c.name
	}
	return s
}

// errUsage reports a bad command line, which the command has already
// described on its flag set's output (see usageErr).
var errUsage = errors.New("usage")

// usageErr writes what is wrong with the command line to fs's output, in
// the voice of every usage error (the command, then the flag, the range
// and the value: "cport serve: --workers: must be between 0 and 4096, got
// -1"), and returns errUsage: cport exits with status 2.
func usageErr(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	return errUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, "cport is a completion-port broadcast chat server and its tools.\n\nUsage:\n\n\tcport <command> [flags]\n\nCommands:\n\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-11s %s\n", c.name, c.short)
		for _, s := range c.subs {
			if !s.hidden {
				fmt.Fprintf(w, "\t%-11s %s\n", "  "+s.name, s.short)
			}
		}
	}
	fmt.Fprint(w, "\nUse \"cport help <command> [<subcommand>]\" or \"cport <command> -h\" for a command's flags.\n")
}
