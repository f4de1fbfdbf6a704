package chat_test

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"time"

	"cport.dev/cport/chat"
)

// A server relays every line a client sends to every client, the sender
// included.
func ExampleServer() {
	srv, err := chat.New(chat.Config{Addr: "127.0.0.1:0", Framing: chat.Line})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()

	alice, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	// A message goes to the clients connected when it arrives: wait until
	// the server has registered both.
	for srv.Stats().Active < 2 {
		time.Sleep(time.Millisecond)
	}
	fmt.Fprint(alice, "hello, everyone\n")

	line, err := bufio.NewReader(alice).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print("alice got: ", line)
	line, err = bufio.NewReader(bob).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print("bob got: ", line)
	// Output:
	// alice got: hello, everyone
	// bob got: hello, everyone
}
