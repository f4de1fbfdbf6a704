package load

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseSockstat(t *testing.T) {
	const text = "sockets: used 1234\nTCP: inuse 57 orphan 3 tw 12 alloc 80 mem 9\nUDP: inuse 4 mem 2\n"
	s, err := parseSockstat([]byte(text), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Sockstat{InUse: 57, Orphan: 3, TimeWait: 12, Alloc: 80, Mem: 9 * 4096}); s != want {
		t.Errorf("parsed %+v; want %+v", s, want)
	}
	for _, bad := range []string{"UDP: inuse 4 mem 2\n", "TCP: inuse x\n"} {
		if s, err := parseSockstat([]byte(bad), 4096); err == nil {
			t.Errorf("parsed %q as %+v; want an error", bad, s)
		}
	}
	if s, err := readSockstat(); err != nil || s.InUse < 0 || s.Alloc < s.Orphan {
		t.Errorf("this host: %+v, %v", s, err)
	}
}

// peerState tells a connection the peer closed with a FIN from one it
// reset, and counts what arrived.
func TestPeerState(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	waitState := func(c net.Conn, want func(connState) bool) connState {
		t.Helper()
		var st connState
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			var ok bool
			if st, ok = peerState(c); !ok {
				t.Fatal("no TCP_INFO")
			}
			if want(st) {
				break
			}
		}
		return st
	}

	c, s := dial()
	defer c.Close()
	if st := waitState(c, func(connState) bool { return true }); st.closed || st.received != 0 {
		t.Errorf("open connection: %+v", st)
	}
	s.Write([]byte("hello"))
	s.Close()
	if st := waitState(c, func(st connState) bool { return st.closed }); !st.closed || st.reset || st.received != 5+1 {
		t.Errorf("after 5 bytes and a FIN: %+v; want closed, not reset, 6 received (the FIN counts one)", st)
	}

	c2, s2 := dial()
	defer c2.Close()
	s2.(*net.TCPConn).SetLinger(0)
	s2.Close()
	if st := waitState(c2, func(st connState) bool { return st.closed }); !st.closed || !st.reset || st.received != 0 {
		t.Errorf("after a reset: %+v; want closed, reset, nothing received", st)
	}
}

// processGone tells a running process from one that exited, reaped or not.
func TestProcessGone(t *testing.T) {
	if gone, err := processGone(os.Getpid()); gone || err != nil {
		t.Errorf("this process: gone %v, %v", gone, err)
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if gone, _ := processGone(pid); gone {
			break
		}
	}
	if gone, err := processGone(pid); !gone || err != nil {
		t.Errorf("an exited process, not reaped: gone %v, %v", gone, err)
	}
	cmd.Wait()
	if gone, err := processGone(pid); !gone || err != nil {
		t.Errorf("a reaped process: gone %v, %v", gone, err)
	}
}
