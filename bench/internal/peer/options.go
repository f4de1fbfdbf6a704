package peer

import (
	"flag"
	"fmt"
	"log"
	"os"
)

// Options is the command line every peer takes.
type Options struct {
	Addr       string  // --addr: TCP address to listen on
	Framing    Framing // --framing: frame or line
	MaxMessage int     // --max-message: largest message, bytes (frame payload; line with its '\n')
	SendQueue  int     // --send-queue: bytes queued to one client before it is dropped as a slow consumer
	Workers    int     // --workers: event loops, pollers or workers (0: the library's choice for a server, GOMAXPROCS)
	// Echo, with --mode echo, makes the server write back to each client
	// what it sent, bytes as they come (the workload of the published gnet
	// benchmarks), instead of relaying messages to everyone.
	Echo bool
	// Backend is the cport engine (cportecho only).
	Backend string
	// Queue, with --model queue, makes cportecho hand its completions to
	// workers through the port's queue (the tutorial's model) instead of
	// running them on the engine's goroutines (Config.Handler).
	Queue bool
}

// Defaults, those of cport serve.
const (
	DefaultAddr       = "127.0.0.1:25000"
	DefaultMaxMessage = 64 << 10
	DefaultSendQueue  = 4 << 20
)

// Parse parses the command line of the peer name. withBackend adds
// --backend.
func Parse(name string, withBackend bool) Options {
	o := Options{Framing: Frame}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&o.Addr, "addr", DefaultAddr, "TCP `address` to listen on")
	fs.Var(&o.Framing, "framing", "how messages are cut: frame (4-byte big-endian length) or line (up to \\n)")
	fs.IntVar(&o.MaxMessage, "max-message", DefaultMaxMessage, "largest message in `bytes` (frame payload; line with its \\n)")
	fs.IntVar(&o.SendQueue, "send-queue", DefaultSendQueue, "`bytes` queued to one client before it is disconnected as a slow consumer")
	fs.IntVar(&o.Workers, "workers", 0, "event loops / pollers (0: GOMAXPROCS)")
	mode := fs.String("mode", "relay", "relay (PROTOCOL.md: every message to every client) or echo (bytes back to their sender)")
	model := "handler"
	if withBackend {
		fs.StringVar(&o.Backend, "backend", "auto", "cport engine")
		fs.StringVar(&model, "model", model, "handler (completions run where they complete: Config.Handler) or queue (workers dequeue them)")
	}
	_ = fs.Parse(os.Args[1:])
	switch *mode {
	case "relay":
	case "echo":
		o.Echo = true
	default:
		fmt.Fprintf(os.Stderr, "%s: --mode %q: want relay or echo\n", name, *mode)
		os.Exit(2)
	}
	switch model {
	case "handler":
	case "queue":
		o.Queue = true
	default:
		fmt.Fprintf(os.Stderr, "%s: --model %q: want handler or queue\n", name, model)
		os.Exit(2)
	}
	if fs.NArg() > 0 || o.MaxMessage <= 0 || o.SendQueue <= 0 || o.Workers < 0 {
		fmt.Fprintf(os.Stderr, "%s: bad arguments\n", name)
		fs.Usage()
		os.Exit(2)
	}
	return o
}

// Listening prints the line the tests wait for: "NAME listening on ADDR",
// ADDR the address bound (with --addr :0, the port the kernel chose).
func Listening(name, addr string) {
	fmt.Printf("%s listening on %s\n", name, addr)
}

// Fatal logs err and exits 1.
func Fatal(name string, err error) {
	log.SetFlags(0)
	log.Fatalf("%s: %v", name, err)
}
