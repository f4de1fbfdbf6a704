package cport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"cport.dev/cport"
)

// net/http's Server serves on the port's engine: the listener and its
// connections, adapted to net.Listener and net.Conn, complete into their
// adapters, so the port needs no worker. (crypto/tls's tls.NewListener
// wraps the adapted listener the same way, for HTTPS.)
func ExampleListener_NetListener() {
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	l, err := port.Listen("tcp", "127.0.0.1:0", 0)
	if err != nil {
		log.Fatal(err)
	}
	nl, err := l.NetListener()
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s", r.URL.Path[1:])
	})}
	go srv.Serve(nl)
	defer srv.Close()

	resp, err := http.Get("http://" + nl.Addr().String() + "/gopher")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
	// Output:
	// 200 OK hello, gopher
}

// A connection of the port read and written as a net.Conn: here a client
// dialed on the port with DialNet, line by line with bufio, against a
// plain echo server of Go's net.
func ExamplePort_DialNet() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server
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
	c, err := port.DialNet(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, line := range []string{"ping\n", "pong\n"} {
		io.WriteString(c, line)
		echo, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(echo)
	}
	// Output:
	// ping
	// pong
}
