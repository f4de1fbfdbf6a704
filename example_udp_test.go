// The iocp engine has no UDP yet (Port.ListenPacket says so), and it is
// the engine a Windows port opens by default.

//go:build !windows

package cport_test

import (
	"fmt"
	"log"
	"net"

	"cport.dev/cport"
)

// A UDP echo server: one multishot receive, each datagram sent back to its
// sender from the completion's Addr, on whichever engine the port runs.
func ExamplePort_ListenPacket() {
	port, err := cport.Open(cport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	pc, err := port.ListenPacket("udp", "127.0.0.1:0", 1)
	if err != nil {
		log.Fatal(err)
	}
	if err := pc.RecvFromMulti(0); err != nil {
		log.Fatal(err)
	}
	go func() { // the server's worker
		w := port.Worker()
		defer w.Close()
		for {
			c, err := w.WaitOne(-1)
			if err != nil {
				return // the port is closed
			}
			if c.Op == cport.OpRecvFrom && c.Err == nil {
				m := cport.MsgOf(c.Buf)
				c.Packet.SendTo(m, c.Addr, 0)
				m.Release()
				c.Release() // the next datagram may complete
			}
		}
	}()

	client, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	buf := make([]byte, 64)
	for _, word := range []string{"hello", "datagram"} {
		client.Write([]byte(word))
		n, err := client.Read(buf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// hello
	// datagram
}
