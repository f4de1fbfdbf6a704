package cport_test

import (
	"bufio"
	"fmt"
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
