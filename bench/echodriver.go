package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"cport.dev/cport/internal/sockopt"
)

// echoDriver is the echo scenarios' load: the connections are split over
// a few loops, each an epoll set served by one goroutine locked to its
// thread, which reads every echo that has come, checks it byte for byte,
// and writes as many messages as came back whole, in one write(2). So the
// driver costs about one read and one write per wake-up, whatever the
// number of connections, and no goroutine switch: the server, not the
// driver, takes most of the 2 cores (a driver with two goroutines per
// connection took most of them itself).
type echoDriver struct {
	pattern []byte
	loops   []*echoLoop
	stop    atomic.Bool
	wg      sync.WaitGroup
	failed  atomic.Pointer[string] // the first failure
}

// echoLoop is one epoll set and the state of its connections.
type echoLoop struct {
	d      *echoDriver
	epfd   int
	conns  map[int32]*echoConn
	echoes atomic.Int64 // whole messages echoed back, checked
}

// echoConn is a connection's state: the offset in the message of its next
// byte, and its socket's descriptor (a dup, in blocking mode off).
type echoConn struct {
	fd  int
	off int
}

// echoLoops is how many loops the driver runs.
const echoLoops = 2

// startEchoDriver takes the connections over (their descriptors are
// duplicated; the caller still closes conns), sends every connection its
// window of messages, and starts the loops.
func startEchoDriver(conns []net.Conn, pattern []byte) (*echoDriver, error) {
	d := &echoDriver{pattern: pattern}
	for range echoLoops {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			d.close()
			return nil, os.NewSyscallError("epoll_create1", err)
		}
		d.loops = append(d.loops, &echoLoop{d: d, epfd: epfd, conns: make(map[int32]*echoConn)})
	}
	window := bytes.Repeat(pattern, echoWindow)
	for i, c := range conns {
		fd, err := sockopt.DupNonblock(c.(syscall.Conn))
		if err != nil {
			d.close()
			return nil, err
		}
		l := d.loops[i%len(d.loops)]
		l.conns[int32(fd)] = &echoConn{fd: fd}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			d.close()
			return nil, os.NewSyscallError("epoll_ctl", err)
		}
		if err := sockopt.WriteAll(fd, window, nil); err != nil {
			d.close()
			return nil, err
		}
	}
	for _, l := range d.loops {
		d.wg.Go(l.run)
	}
	return d, nil
}

// run serves the loop's connections until the driver stops.
func (l *echoLoop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	out := bytes.Repeat(l.d.pattern, 256)
	for !l.d.stop.Load() {
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			l.d.fail(os.NewSyscallError("epoll_wait", err))
			return
		}
		for _, ev := range events[:n] {
			c := l.conns[ev.Fd]
			if c == nil {
				continue
			}
			if err := l.serve(c, buf, out); err != nil {
				if !l.d.stop.Load() {
					l.d.fail(err)
				}
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
				delete(l.conns, ev.Fd)
			}
		}
	}
}

// serve reads what c's socket holds, checks it, and sends back as many
// messages as came back whole.
func (l *echoLoop) serve(c *echoConn, buf, out []byte) error {
	p := l.d.pattern
	whole := 0
	for {
		n, err := unix.Read(c.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return os.NewSyscallError("read", err)
		}
		if n == 0 {
			return errors.New("the server closed the connection")
		}
		for b := buf[:n]; len(b) > 0; {
			k := min(len(b), len(p)-c.off)
			if !bytes.Equal(b[:k], p[c.off:c.off+k]) {
				return fmt.Errorf("the echo differs from the message")
			}
			b = b[k:]
			if c.off += k; c.off == len(p) {
				c.off = 0
				whole++
			}
		}
		if n < len(buf) {
			break // level-triggered: anything left wakes the loop again
		}
	}
	if whole == 0 {
		return nil
	}
	l.echoes.Add(int64(whole))
	for whole > 0 {
		k := min(whole, len(out)/len(p))
		if err := sockopt.WriteAll(c.fd, out[:k*len(p)], l.d.stop.Load); err != nil {
			return err
		}
		whole -= k
	}
	return nil
}

func (d *echoDriver) fail(err error) {
	msg := err.Error()
	d.failed.CompareAndSwap(nil, &msg)
}

// echoes returns the messages echoed back so far.
func (d *echoDriver) echoes() int64 {
	var t int64
	for _, l := range d.loops {
		t += l.echoes.Load()
	}
	return t
}

// close stops the loops and closes the duplicated descriptors.
func (d *echoDriver) close() {
	d.stop.Store(true)
	d.wg.Wait()
	for _, l := range d.loops {
		for _, c := range l.conns {
			unix.Close(c.fd)
		}
		unix.Close(l.epfd)
	}
}
