package cport_test

import (
	"fmt"
	"log"
	"net"

	"cport.dev/cport"
)

// A UDP echo server: one multishot receive, each datagram sent back to its
// sender from the completion's Addr. Its client is a socket of the same
// port, whose single receives get the echoes.
func ExamplePort_ListenPacket() {
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	const serverKey, clientKey = 1, 2
	server, err := port.ListenPacket("udp", "127.0.0.1:0", serverKey)
	if err != nil {
		log.Fatal(err)
	}
	client, err := port.ListenPacket("udp", "127.0.0.1:0", clientKey)
	if err != nil {
		log.Fatal(err)
	}
	if err := server.RecvFromMulti(0); err != nil {
		log.Fatal(err)
	}

	echoes := make(chan string)
	go func() { // the port's worker
		w := port.Worker()
		defer w.Close()
		for {
			c, err := w.WaitOne(-1)
			if err != nil {
				return // the port is closed
			}
			switch {
			case c.Op == cport.OpRecvFrom && c.Err == nil && c.Key == serverKey:
				m := cport.MsgOf(c.Buf)
				c.Packet.SendTo(m, c.Addr, 0) // the echo, to the sender
				m.Release()
				c.Release() // the next datagram may complete
			case c.Op == cport.OpRecvFrom && c.Err == nil && c.Key == clientKey:
				echoes <- string(c.Buf)
				c.Release()
			}
		}
	}()

	to := server.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, word := range []string{"hello", "datagram"} {
		client.RecvFrom(0)
		m := cport.MsgOf([]byte(word))
		client.SendTo(m, to, 0)
		m.Release()
		fmt.Println(<-echoes)
	}
	// Output:
	// hello
	// datagram
}
