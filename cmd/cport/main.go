// Command cport is the completion-port chat server and its tools.
//
// Usage:
//
//	cport serve [flags]    run the broadcast chat server (port 25000)
//	cport client [flags]   talk to a server from a terminal or a pipe
//	cport version          print the version, the build and the engines (also: cport --version)
//	cport help [command]   describe a command and its flags
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// A command is one subcommand of cport.
type command struct {
	name  string
	short string
	// run parses args with fs and runs the command; its error, if any,
	// makes cport exit with status 1.
	run func(fs *flag.FlagSet, args []string) error
	// print, for a command whose result goes to standard output (given
	// as stdout), is called instead of run.
	print func(fs *flag.FlagSet, args []string, stdout io.Writer) error
}

var commands = []command{
	{name: "serve", short: "run the broadcast chat server", print: runServe},
	{name: "client", short: "connect to a server: send standard input, print what arrives", run: runClient},
	{name: "load", short: "load-test a server and check every message (load idle: hold idle connections; load churn: connect and leave)", run: runLoad},
	{name: "models", short: "measure the I/O models (select, poll, epoll, io_uring, goroutine per connection): docs/models", run: runModels},
	{name: "version", short: "print the version, the build and the engines this system allows (also: cport --version)", print: runVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name, args := args[0], args[1:]
	if name == "--version" || name == "-version" {
		name = "version"
	}
	out := stderr
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) == 0 {
			usage(stdout)
			return 0
		}
		name, args, out = args[0], []string{"-h"}, stdout
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		fs := flag.NewFlagSet("cport "+c.name, flag.ContinueOnError)
		fs.SetOutput(out)
		var err error
		if c.print != nil {
			err = c.print(fs, args, stdout)
		} else {
			err = c.run(fs, args)
		}
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "cport %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "cport: unknown command %q\n\n", name)
	usage(stderr)
	return 2
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

// parse parses args into fs. Help (-h) goes to fs's output; a bad command
// line is one line there, in usageErr's voice, and errUsage.
func parse(fs *flag.FlagSet, args []string) error {
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
			if v, ok := f.Value.(failer); ok && v.failed() != nil {
				bad = usageErr(fs, "--%s: %v", f.Name, v.failed())
			}
		})
		if bad != nil {
			return bad
		}
		return usageErr(fs, "%v", err)
	case fs.NArg() > 0:
		return usageErr(fs, "unexpected arguments: %q", fs.Args())
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, "cport is a completion-port broadcast chat server and its tools.\n\nUsage:\n\n\tcport <command> [flags]\n\nCommands:\n\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-8s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, "\nUse \"cport help <command>\" or \"cport <command> -h\" for a command's flags.\n")
}
