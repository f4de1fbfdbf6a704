package cport_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cport.dev/cport"
)

// TestConformanceManyConns: thousands of clients connect, each sends a
// message of its own, the server echoes it with Send, each client gets its
// own back; then all close, and each conn's receive ends with io.EOF.
func TestConformanceManyConns(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, b string) {
		n := 2000
		if testing.Short() {
			n = 200
		}
		p := openPort(t, b)
		var (
			accepted, eofs, sent atomic.Int64
			mu                   sync.Mutex
			bad                  []string
		)
		fail := func(format string, args ...any) {
			mu.Lock()
			if len(bad) < 10 {
				bad = append(bad, fmt.Sprintf(format, args...))
			}
			mu.Unlock()
		}
		l := listen(t, p, 1)
		runWorkers(t, p, 2, 16, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					fail("accept: %v", c.Err)
					return
				}
				accepted.Add(1)
				c.Conn.SetKey(2)
				if err := c.Conn.RecvMulti(3); err != nil {
					fail("RecvMulti: %v", err)
				}
			case cport.OpRecv:
				switch {
				case c.Key != 2 || c.Tag != 3:
					fail("receive completion %s; want key 2 tag 3", describe(c))
				case c.Err == nil:
					m := cport.MsgOf(c.Buf)
					if err := c.Conn.Send(m, 4); err != nil {
						fail("Send: %v", err)
					}
					m.Release()
				case errors.Is(c.Err, io.EOF):
					eofs.Add(1)
					c.Conn.Close()
				default:
					fail("receive: %v", c.Err)
				}
				c.Release()
			case cport.OpSend:
				if c.Err != nil || c.Tag != 4 || c.Key != 2 {
					fail("send completion %s", describe(c))
				}
				sent.Add(1)
			}
		})
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		clients := dial(t, l.Addr(), n)
		eventually(t, fmt.Sprintf("%d accepts", n), func() bool { return accepted.Load() == int64(n) })
		if got := p.Conns(); got != n {
			t.Errorf("Port.Conns() = %d with %d clients connected", got, n)
		}
		// Each client sends its message and reads it back; a few goroutines
		// drive them all (every echo waits in the kernel meanwhile).
		msg := func(i int) []byte {
			return fmt.Appendf(nil, "client %d of %d says %s.", i, n, bytes.Repeat([]byte{byte('a' + i%26)}, i%97))
		}
		var wg sync.WaitGroup
		const drivers = 8
		for d := range drivers {
			wg.Go(func() {
				for i := d; i < n; i += drivers {
					cl := clients[i]
					cl.SetWriteDeadline(time.Now().Add(longWait))
					if _, err := cl.Write(msg(i)); err != nil {
						t.Errorf("client %d: write: %v", i, err)
						return
					}
				}
				for i := d; i < n; i += drivers {
					want := msg(i)
					got, err := readN(clients[i], len(want))
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("client %d: read %q, %v; want %q", i, got, err, want)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, cl := range clients {
			cl.Close()
		}
		eventually(t, fmt.Sprintf("%d EOF completions", n), func() bool { return eofs.Load() == int64(n) })
		eventually(t, "Port.Conns() to drop to 0 as the conns close", func() bool { return p.Conns() == 0 })
		eventually(t, "a send completion per echo at least", func() bool { return sent.Load() >= int64(n) })
		// Absence check: no more EOFs than conns.
		time.Sleep(grace)
		if got := eofs.Load(); got != int64(n) {
			t.Errorf("%d EOF completions for %d conns", got, n)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, s := range bad {
			t.Error(s)
		}
	})
}

// Broadcast frames: sender index, sequence number, filler.
const frameSize = 16

func frame(sender, seq int) []byte {
	f := make([]byte, frameSize)
	binary.BigEndian.PutUint32(f[0:], uint32(sender))
	binary.BigEndian.PutUint32(f[4:], uint32(seq))
	for i := 8; i < frameSize; i++ {
		f[i] = byte(sender ^ seq ^ i)
	}
	return f
}

// TestConformanceBroadcast: every message received from any client is sent
// to every client (one Msg, SendQuiet to each conn, then Release); each
// client gets every message, in each sender's order.
func TestConformanceBroadcast(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, b string) {
		clientsN, perClient := 100, 20
		if testing.Short() {
			clientsN, perClient = 40, 10
		}
		p := openPort(t, b)
		type state struct {
			conn    *cport.Conn
			partial []byte // bytes of an incomplete frame
		}
		var (
			mu     sync.Mutex
			states []*state
			failMu sync.Mutex
			failed error
		)
		fail := func(err error) {
			failMu.Lock()
			if failed == nil {
				failed = err
			}
			failMu.Unlock()
		}
		l := listen(t, p, 1)
		runWorkers(t, p, 2, 8, func(c *cport.Completion) {
			switch c.Op {
			case cport.OpAccept:
				if c.Err != nil {
					fail(c.Err)
					return
				}
				mu.Lock()
				c.Conn.SetKey(uint64(len(states)))
				states = append(states, &state{conn: c.Conn})
				mu.Unlock()
				if err := c.Conn.RecvMulti(0); err != nil {
					fail(err)
				}
			case cport.OpRecv:
				defer c.Release()
				if c.Err != nil {
					if !errors.Is(c.Err, io.EOF) {
						fail(c.Err)
					}
					c.Conn.Close()
					return
				}
				mu.Lock()
				st := states[c.Key]
				all := states
				mu.Unlock()
				// One worker at a time has this conn's completion: st is ours.
				st.partial = append(st.partial, c.Buf...)
				for len(st.partial) >= frameSize {
					m := cport.MsgOf(st.partial[:frameSize])
					for _, o := range all {
						if err := o.conn.SendQuiet(m); err != nil && !errors.Is(err, net.ErrClosed) {
							fail(err)
						}
					}
					m.Release()
					st.partial = st.partial[frameSize:]
				}
				st.partial = append([]byte(nil), st.partial...)
			case cport.OpSend:
				fail(fmt.Errorf("send completion %s from SendQuiet", describe(c)))
			}
		})
		if err := l.AcceptMulti(0); err != nil {
			t.Fatal(err)
		}
		clients := dial(t, l.Addr(), clientsN)
		eventually(t, "every client to be accepted", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(states) == clientsN
		})
		// Each client is identified by the key the server gave its conn.
		ids := make(map[string]int)
		mu.Lock()
		for i, st := range states {
			ids[st.conn.RemoteAddr().String()] = i
		}
		mu.Unlock()
		var wg sync.WaitGroup
		for _, cl := range clients {
			id := ids[cl.LocalAddr().String()]
			wg.Go(func() {
				cl.SetDeadline(time.Now().Add(2 * longWait))
				// Write in chunks that split frames.
				var out []byte
				for seq := range perClient {
					out = append(out, frame(id, seq)...)
				}
				for len(out) > 0 {
					k := min(len(out), 1+(id*7)%40)
					if _, err := cl.Write(out[:k]); err != nil {
						t.Errorf("client %d: write: %v", id, err)
						return
					}
					out = out[k:]
				}
				next := make([]int, clientsN)
				buf := make([]byte, frameSize)
				for range clientsN * perClient {
					if _, err := io.ReadFull(cl, buf); err != nil {
						t.Errorf("client %d: read: %v", id, err)
						return
					}
					sender := int(binary.BigEndian.Uint32(buf[0:]))
					seq := int(binary.BigEndian.Uint32(buf[4:]))
					if sender >= clientsN || seq != next[sender] || !bytes.Equal(buf, frame(sender, seq)) {
						t.Errorf("client %d: got message %d of sender %d; want %d", id, seq, sender, next[min(sender, clientsN-1)])
						return
					}
					next[sender]++
				}
			})
		}
		waitGroup(t, &wg, "the clients to get every message")
		failMu.Lock()
		err := failed
		failMu.Unlock()
		if err != nil {
			t.Fatalf("server: %v", err)
		}
		mu.Lock()
		all := states
		mu.Unlock()
		for i, st := range all {
			eventually(t, fmt.Sprintf("conn %d: Queued() to drop to 0", i), func() bool { return st.conn.Queued() == 0 })
		}
	})
}
