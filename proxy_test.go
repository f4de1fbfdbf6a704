package cport_test

import (
	"bufio"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// TestProxyGiB moves 1 GiB (64 MiB with -short) through the example's
// proxy (Example_proxy) to an echo server and back, every byte checked,
// then the end of stream both ways.
func TestProxyGiB(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	}()
	addr, port, err := startProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))

	sent := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 256<<10)
		_, err := io.CopyN(w, stream(1), size)
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	want := stream(1)
	got := bufio.NewReaderSize(conn, 256<<10)
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for n := int64(0); n < size; {
		k := int(min(int64(len(a)), size-n))
		if _, err := io.ReadFull(got, a[:k]); err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
		want.Read(b[:k])
		for i := range k {
			if a[i] != b[i] {
				t.Fatalf("byte %d: %#x; want %#x", n+int64(i), a[i], b[i])
			}
		}
		n += int64(k)
	}
	if err := <-sent; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if k, err := got.Read(a); k != 0 || err != io.EOF {
		t.Fatalf("after all the bytes: %d, %v; want the end of stream", k, err)
	}
}

// prng reads pseudo-random bytes.
type prng struct{ r *rand.ChaCha8 }

// stream returns a reproducible stream of pseudo-random bytes.
func stream(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return prng{rand.NewChaCha8(s)}
}

func (p prng) Read(b []byte) (int, error) { return p.r.Read(b) }
