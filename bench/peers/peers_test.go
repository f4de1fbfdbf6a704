package peers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bin is the directory TestMain builds the peers into.
var bin string

var relayPeers = []string{"netpeer", "gnetpeer", "nbiopeer"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "peers")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if os.Getenv("PEERS_RACE") != "" { // PEERS_RACE=1 go test ./peers: the peers under the race detector
		args = append(args, "-race")
	}
	for _, p := range append(relayPeers, "cportecho", "wspeer") {
		args = append(args, "cport.dev/cport/bench/peers/"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the peers:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// start runs a peer with args on a port the kernel chooses until the test
// ends, and returns the address it printed once listening.
func start(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, addr, ok := strings.Cut(sc.Text(), " listening on "); ok {
				addrs <- addr
			}
		}
		close(addrs)
	}()
	exited := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if strings.Contains(stderr.String(), "DATA RACE") {
			t.Errorf("%s: %s", name, stderr.String())
		}
	})
	select {
	case addr, ok := <-addrs:
		go func() { cmd.Wait(); close(exited) }() // after the pipe was read from
		if !ok {
			<-exited
			t.Fatalf("%s exited: %s", name, stderr.String())
		}
		return addr
	case <-time.After(10 * time.Second):
		go func() { cmd.Wait(); close(exited) }()
		t.Fatalf("%s did not say where it listens after 10s: %s", name, stderr.String())
	}
	return ""
}

// A client is a tiny client of the relay.
type client struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	framing string
}

func dial(t testing.TB, addr, framing string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn), framing: framing}
}

// encode returns body as one message of framing.
func encode(framing, body string) []byte {
	if framing == "line" {
		return []byte(body + "\n")
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(b, body...)
}

func (c *client) send(bodies ...string) {
	c.t.Helper()
	var b []byte
	for _, body := range bodies {
		b = append(b, encode(c.framing, body)...)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the body of the next message, within d.
func (c *client) recv(d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	if c.framing == "line" {
		s, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(s, "\n"), nil
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return "", err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c.r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// register makes sure the server registered every client: one of them
// sends probes until each has received one. Probes start with "probe".
func register(t testing.TB, clients []*client) {
	t.Helper()
	got := make([]bool, len(clients))
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; ; n++ {
		clients[0].send(fmt.Sprintf("probe %d", n))
		all := true
		for i, c := range clients {
			for !got[i] {
				body, err := c.recv(100 * time.Millisecond)
				if err != nil {
					break
				}
				got[i] = strings.HasPrefix(body, "probe")
			}
			all = all && got[i]
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients not registered after 10s: %v", got)
		}
	}
}

// eachPeer runs f for every relay peer and framing.
func eachPeer(t *testing.T, f func(t *testing.T, peer, framing string)) {
	for _, p := range relayPeers {
		for _, framing := range []string{"frame", "line"} {
			t.Run(p+"/"+framing, func(t *testing.T) {
				t.Parallel()
				f(t, p, framing)
			})
		}
	}
}

// TestRelay checks that every message reaches every client, the sender
// included, once, in each sender's order.
func TestRelay(t *testing.T) {
	eachPeer(t, func(t *testing.T, peer, framing string) {
		addr := start(t, peer, "--framing", framing)
		clients := make([]*client, 8)
		for i := range clients {
			clients[i] = dial(t, addr, framing)
		}
		register(t, clients)
		const perSender = 1000
		for s, c := range clients {
			go func() {
				for i := 0; i < perSender; i += 10 {
					var batch []string
					for j := i; j < i+10; j++ {
						batch = append(batch, fmt.Sprintf("m %d %d", s, j))
					}
					var b []byte
					for _, body := range batch {
						b = append(b, encode(framing, body)...)
					}
					if _, err := c.conn.Write(b); err != nil {
						t.Errorf("sender %d: %v", s, err) // not Fatal: another goroutine
						return
					}
					if i%40 == 0 { // let the server go idle now and then
						time.Sleep(2 * time.Millisecond)
					}
				}
			}()
		}
		for r, c := range clients {
			next := make([]int, len(clients))
			for n := 0; n < perSender*len(clients); {
				body, err := c.recv(10 * time.Second)
				if err != nil {
					t.Fatalf("client %d after %d messages: %v", r, n, err)
				}
				if strings.HasPrefix(body, "probe") {
					continue
				}
				var s, seq int
				if _, err := fmt.Sscanf(body, "m %d %d", &s, &seq); err != nil || s >= len(clients) {
					t.Fatalf("client %d: unexpected message %q", r, body)
				}
				if seq != next[s] {
					t.Fatalf("client %d: from sender %d got %d, want %d", r, s, seq, next[s])
				}
				next[s]++
				n++
			}
		}
	})
}

// TestLimit checks that a message above --max-message closes that client
// only.
func TestLimit(t *testing.T) {
	eachPeer(t, func(t *testing.T, peer, framing string) {
		addr := start(t, peer, "--framing", framing, "--max-message", "100")
		bad, good := dial(t, addr, framing), dial(t, addr, framing)
		register(t, []*client{good, bad})
		good.send(strings.Repeat("x", 99)) // at the limit: fine (a line: 100 bytes with its \n)
		if framing == "line" {
			bad.conn.Write([]byte(strings.Repeat("y", 101)))
		} else {
			bad.conn.Write(binary.BigEndian.AppendUint32(nil, 101))
		}
		for {
			body, err := bad.recv(5 * time.Second)
			if err != nil {
				if isTimeout(err) {
					t.Fatal("the client over the limit is still connected")
				}
				break
			}
			if strings.HasPrefix(body, "y") {
				t.Fatal("the message over the limit was relayed")
			}
		}
		good.send("still here")
		for {
			body, err := good.recv(5 * time.Second)
			if err != nil {
				t.Fatalf("the other client: %v", err)
			}
			if body == "still here" {
				break
			}
		}
	})
}

// TestPartialDropped checks that a message cut by a disconnect is not
// relayed.
func TestPartialDropped(t *testing.T) {
	eachPeer(t, func(t *testing.T, peer, framing string) {
		addr := start(t, peer, "--framing", framing)
		quitter, stayer := dial(t, addr, framing), dial(t, addr, framing)
		register(t, []*client{stayer, quitter})
		half := encode(framing, "partial message")
		quitter.conn.Write(half[:len(half)-3])
		time.Sleep(50 * time.Millisecond)
		quitter.conn.Close()
		time.Sleep(50 * time.Millisecond)
		stayer.send("after")
		for {
			body, err := stayer.recv(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(body, "partial") {
				t.Fatalf("a partial message was relayed: %q", body)
			}
			if body == "after" {
				break
			}
		}
	})
}

// TestSlowConsumer checks that a client that does not read is disconnected
// once its queue passes --send-queue, and that the others get everything.
func TestSlowConsumer(t *testing.T) {
	eachPeer(t, func(t *testing.T, peer, framing string) {
		addr := start(t, peer, "--framing", framing, "--send-queue", "262144")
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		slow := &client{t: t, conn: conn, r: bufio.NewReader(conn), framing: framing}
		fast := dial(t, addr, framing)
		register(t, []*client{fast, slow})

		// 16 MiB through the fast client, which reads its echoes, 32
		// messages at a time: its own queue stays under the limit.
		const n, batch, size = 16 << 10, 32, 1 << 10
		body := strings.Repeat("z", size-1)
		burst := bytes.Repeat(encode(framing, body), batch)
		for got := 0; got < n; {
			if _, err := fast.conn.Write(burst); err != nil {
				t.Fatal(err)
			}
			for end := got + batch; got < end; {
				b, err := fast.recv(20 * time.Second)
				if err != nil {
					t.Fatalf("the fast client after %d messages: %v", got, err)
				}
				if b == body {
					got++
				}
			}
		}
		// The slow client must find its connection closed after what
		// the kernel buffered.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		if ctx.Err() != nil || isTimeout(err) {
			t.Fatal("the slow consumer was not disconnected")
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestEcho checks the echo mode of the peers and cportecho (both its
// models).
func TestEcho(t *testing.T) {
	type echoPeer struct{ name, model string }
	var peers []echoPeer
	for _, p := range relayPeers {
		peers = append(peers, echoPeer{p, ""})
	}
	peers = append(peers, echoPeer{"cportecho", "handler"}, echoPeer{"cportecho", "queue"})
	for _, ep := range peers {
		p := ep.name
		args := []string{"--mode", "echo"}
		if ep.model != "" {
			p += "/" + ep.model
			args = append(args, "--model", ep.model)
		}
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			addr := start(t, ep.name, args...)
			a, b := dial(t, addr, "frame"), dial(t, addr, "frame")
			want := bytes.Repeat([]byte("0123456789abcdef"), 64)
			for _, c := range []*client{a, b} {
				for range 3 {
					if _, err := c.conn.Write(want); err != nil {
						t.Fatal(err)
					}
					got := make([]byte, len(want))
					c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c.conn, got); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatal("echo differs")
					}
				}
			}
		})
	}
}
