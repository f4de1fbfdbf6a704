package cport_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"cport.dev/cport"
)

// Timers complete on the port, as any operation does: the worker that
// waits for I/O also runs the timeouts, and a timer stopped in time never
// completes.
func ExamplePort_Timer() {
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()

	const key = 9 // a key of the caller's, as for a socket
	port.Timer(20*time.Millisecond, key, 2)
	port.Timer(10*time.Millisecond, key, 1)
	canceled, _ := port.Timer(15*time.Millisecond, key, 99)
	fmt.Println("stopped:", canceled.Stop())

	w := port.Worker()
	defer w.Close()
	for range 2 {
		c, err := w.WaitOne(-1)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(c.Op, c.Key, c.Tag)
	}
	// Output:
	// stopped: true
	// timer 9 1
	// timer 9 2
}

// A read deadline fails a receive that waits too long; the connection
// goes on, and the bytes that come later are received once the deadline
// is moved.
func ExampleConn_SetReadDeadline() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	late := make(chan net.Conn, 1)
	go func() { // a peer that answers late: when told to
		c, err := ln.Accept()
		if err != nil {
			return
		}
		late <- c
	}()

	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
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
		switch {
		case c.Op == cport.OpDial:
			if c.Err != nil {
				log.Fatal(c.Err)
			}
			c.Conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			c.Conn.Recv(0)
		case c.Op == cport.OpRecv && errors.Is(c.Err, os.ErrDeadlineExceeded):
			fmt.Println("no reply in time")
			c.Conn.SetReadDeadline(time.Time{}) // wait as long as it takes
			c.Conn.Recv(0)
			peer := <-late
			peer.Write([]byte("sorry, I'm late"))
			peer.Close()
		case c.Op == cport.OpRecv:
			if c.Err != nil {
				log.Fatal(c.Err)
			}
			fmt.Printf("reply: %s\n", c.Buf)
			c.Release()
			c.Conn.Close()
			return
		}
	}
	// Output:
	// no reply in time
	// reply: sorry, I'm late
}
