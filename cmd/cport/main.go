// Command cport is the completion-port chat server and its tools.
//
// Usage:
//
//	cport serve [flags]    run the broadcast chat server (port 25000)
//	cport client [flags]   talk to a server from a terminal or a pipe
//	cport help [command]   describe a command and its flags
package main

import (
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
}

var commands = []command{
	{name: "serve", short: "run the broadcast chat server", run: runServe},
	{name: "client", short: "connect to a server: send standard input, print what arrives", run: runClient},
	{name: "load", short: "load-test a server and check every message (load idle: hold idle connections; load churn: connect and leave)", run: runLoad},
	{name: "models", short: "measure the I/O models (select, poll, epoll, io_uring, goroutine per connection): docs/models", run: runModels},
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
		err := c.run(fs, args)
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

// errUsage reports a command line the flag package already complained about.
var errUsage = errors.New("usage")

// parse parses args into fs, mapping the flag package's errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		return errUsage
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
