package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cport.dev/cport/chat"
)

// openPTY opens a pseudo-terminal of 80 columns and 24 rows, and returns
// its two ends; both are closed when the test ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// TestClientTerminal drives cport client in a pseudo-terminal: a message
// that arrives while the user types is printed above the input line, which
// keeps the typed text; a pasted line of 10,000 bytes arrives whole; the
// server going away is said, and the client connects again.
func TestClientTerminal(t *testing.T) {
	needBin(t)
	srv := chatServer(t, chat.Line)
	addr := srv.Addr().String()
	master, slave := openPTY(t)
	cmd := exec.Command(cportBin, "client", "--addr", addr, "--framing", "line")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var screen syncBuffer // everything the client drew
	go io.Copy(&screen, master)
	waitScreen := func(s string) {
		t.Helper()
		if !screen.waitFor(s, longWait) {
			t.Fatalf("the terminal has not shown %q after %v; it shows:\n%q", s, longWait, screen.String())
		}
	}
	waitScreen("* connected to " + addr)

	peer, err := net.DialTimeout("tcp", addr, longWait)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	waitActive(t, srv, 2)
	pr := bufio.NewReader(peer)
	readPeer := func() string {
		t.Helper()
		peer.SetReadDeadline(time.Now().Add(longWait))
		line, err := pr.ReadString('\n')
		if err != nil {
			t.Fatalf("the peer read %q: %v", line, err)
		}
		return line
	}

	// Typing, then a message arrives: printed above, the typed text drawn
	// again after it, and what is sent is the whole of what was typed.
	master.WriteString("hello wor")
	waitScreen("> hello wor")
	peer.Write([]byte("a message arrives\n"))
	if got := readPeer(); got != "a message arrives\n" { // its echo
		t.Fatalf("the peer read %q", got)
	}
	waitScreen("a message arrives\r\n> hello wor")
	master.WriteString("ld\r")
	if got := readPeer(); got != "hello world\n" {
		t.Fatalf("the peer received %q; want the typed line whole", got)
	}

	// A 10,000-byte line, pasted.
	long := strings.Repeat("0123456789", 1000)
	go master.WriteString("\x1b[200~" + long + "\x1b[201~\r")
	if got := readPeer(); got != long+"\n" {
		t.Fatalf("the peer received %d bytes for a pasted line of %d", len(got), len(long)+1)
	}

	// The server goes away: said, and the client tries again.
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitScreen("* connection lost (closed by the server): connecting again")
	srv2, err := chat.New(chat.Config{Addr: addr, Backend: backends(t)[0], Framing: chat.Line})
	if err != nil {
		t.Fatalf("a second server on %s: %v", addr, err)
	}
	go srv2.Serve()
	defer srv2.Close()
	waitScreen("* connected again to " + addr)

	// Ctrl+D on an empty line quits, and the terminal is given back.
	master.WriteString("\x04")
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("the client exited with %v after Ctrl+D; want 0", err)
		}
	case <-time.After(longWait):
		t.Fatalf("the client still runs %v after Ctrl+D", longWait)
	}
}
