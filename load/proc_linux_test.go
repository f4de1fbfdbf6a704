package load

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// acceptQueued counts the connections a listener has not accepted yet,
// and none once they are.
func TestAcceptQueued(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(p)
	if n := acceptQueued(port); n != 0 {
		t.Fatalf("accept queue of a new listener: %d; want 0", n)
	}
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// The client's last ACK may still be on its way when Dial returns.
	for deadline := time.Now().Add(10 * time.Second); acceptQueued(port) != 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := acceptQueued(port); n != 3 {
		t.Errorf("accept queue after 3 connects: %d; want 3", n)
	}
	for range 3 {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); acceptQueued(port) != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := acceptQueued(port); n != 0 {
		t.Errorf("accept queue after 3 accepts: %d; want 0", n)
	}
}
