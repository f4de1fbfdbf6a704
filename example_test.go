package cport_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"

	"cport.dev/cport"
)

// An echo server on a completion port with one worker, and a client.
func Example_echoServer() {
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := port.Listen("tcp", "127.0.0.1:0", 1)
	if err != nil {
		log.Fatal(err)
	}
	if err := ln.AcceptMulti(0); err != nil {
		log.Fatal(err)
	}

	// The worker: accept, receive, echo.
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := port.Worker()
		defer w.Close()
		for {
			c, err := w.WaitOne(-1)
			if err != nil {
				return // cport.ErrClosed: the port is closed
			}
			switch c.Op {
			case cport.OpAccept:
				if c.Err == nil {
					c.Conn.RecvMulti(0)
				}
			case cport.OpRecv:
				if c.Err != nil { // io.EOF: the client is done
					c.Conn.Close()
				} else {
					m := cport.MsgOf(c.Buf) // a copy: Buf goes back with Release
					c.Conn.SendQuiet(m)
					m.Release()
				}
				c.Release()
			}
		}
	}()

	// The client.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for _, line := range []string{"hello", "completion port"} {
		fmt.Fprintln(conn, line)
		reply, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print("echo: ", reply)
	}
	conn.Close()

	port.Close()
	<-done
	// Output:
	// echo: hello
	// echo: completion port
}

// A client that sends a line and shuts its writing side down at once, as
// `printf 'x\n' | nc -N host port` does: the echo server above closes on
// the end of stream, and Close still writes the echo queued before it.
func ExampleConn_Close() {
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	ln, err := port.Listen("tcp", "127.0.0.1:0", 1)
	if err != nil {
		log.Fatal(err)
	}
	ln.AcceptMulti(0)
	go func() {
		w := port.Worker()
		defer w.Close()
		for {
			c, err := w.WaitOne(-1)
			if err != nil {
				return
			}
			switch {
			case c.Op == cport.OpAccept && c.Err == nil:
				c.Conn.RecvMulti(0)
			case c.Op == cport.OpRecv && c.Err != nil:
				c.Conn.Close() // graceful: what is queued is written first
			case c.Op == cport.OpRecv:
				m := cport.MsgOf(c.Buf)
				c.Conn.SendQuiet(m) // before the Release, which lets the end of stream come
				m.Release()
				c.Release()
			}
		}
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, "x")
	conn.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(conn) // the echo, then the end of the stream
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", reply)
	// Output:
	// "x\n"
}

// An echo server that runs its completions where they complete
// (Config.Handler): each receive is echoed by the engine goroutine that
// read it, with no worker and no other goroutine woken.
func ExampleConfig_handler() {
	port, err := cport.Open(cport.Config{Handler: func(c cport.Completion) {
		switch c.Op {
		case cport.OpAccept:
			if c.Err == nil {
				c.Conn.RecvMulti(0)
			}
		case cport.OpRecv:
			if c.Err != nil {
				c.Conn.Close()
			} else {
				m := cport.MsgOf(c.Buf)
				c.Conn.SendQuiet(m)
				m.Release()
			}
			c.Release()
		}
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	ln, err := port.Listen("tcp", "127.0.0.1:0", 1)
	if err != nil {
		log.Fatal(err)
	}
	if err := ln.AcceptMulti(0); err != nil {
		log.Fatal(err)
	}

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, "run to completion")
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print("echo: ", reply)
	// Output: echo: run to completion
}

// A TCP client on a completion port: Dial starts the connect, and its
// completion (OpDial) brings the connection, to which the client attaches
// its session (SetValue); every later completion of the connection finds
// the session there, with no map from connections to sessions. The server
// is Go's net, an echo of lines.
func ExamplePort_Dial() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() { // the server: echo one connection
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()

	// A client's session: what it has received.
	type session struct{ got []byte }

	if err := port.Dial("tcp", ln.Addr().String(), 1, 0); err != nil {
		log.Fatal(err)
	}
	w := port.Worker()
	defer w.Close()
	for {
		c, err := w.WaitOne(-1)
		if err != nil {
			log.Fatal(err)
		}
		switch c.Op {
		case cport.OpDial:
			if c.Err != nil {
				log.Fatal(c.Err) // refused, unreachable...
			}
			c.Conn.SetValue(&session{})
			c.Conn.RecvMulti(0)
			m := cport.MsgOf([]byte("hello, server\n"))
			c.Conn.SendQuiet(m)
			m.Release()
		case cport.OpRecv:
			if c.Err != nil {
				log.Fatal(c.Err)
			}
			s := c.Conn.Value().(*session)
			s.got = append(s.got, c.Buf...)
			c.Release()
			if bytes.HasSuffix(s.got, []byte("\n")) {
				fmt.Printf("reply: %s", s.got)
				c.Conn.Close()
				return
			}
		}
	}
	// Output: reply: hello, server
}

// A server handed its listening socket, as systemd's socket activation
// hands it (os.NewFile(3, "listener") there, an *os.File) or a parent
// process across a restart: here a *net.TCPListener. The port adopts a
// duplicate, so the caller closes its own listener at once.
func ExamplePort_AdoptListener() {
	inherited, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	l, err := port.AdoptListener(inherited.(*net.TCPListener), 1)
	if errors.Is(err, cport.ErrUnsupported) {
		// An engine that cannot adopt (iocp): listen anew.
		inherited.Close()
		l, err = port.Listen("tcp", inherited.Addr().String(), 1)
	}
	if err != nil {
		log.Fatal(err)
	}
	inherited.Close() // the port listens on its duplicate
	if err := l.AcceptMulti(0); err != nil {
		log.Fatal(err)
	}

	go func() { // a client
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("hello, adopted listener\n"))
		io.Copy(io.Discard, c)
	}()

	w := port.Worker()
	defer w.Close()
	var got []byte
	for {
		c, err := w.WaitOne(-1)
		if err != nil {
			log.Fatal(err)
		}
		switch c.Op {
		case cport.OpAccept:
			if c.Err != nil {
				log.Fatal(c.Err)
			}
			c.Conn.RecvMulti(0)
		case cport.OpRecv:
			if c.Err != nil {
				log.Fatal(c.Err)
			}
			got = append(got, c.Buf...)
			c.Release()
			if bytes.HasSuffix(got, []byte("\n")) {
				fmt.Printf("received: %s", got)
				c.Conn.Close()
				return
			}
		}
	}
	// Output: received: hello, adopted listener
}
