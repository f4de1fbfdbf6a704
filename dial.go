package cport

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"cport.dev/cport/internal/engine"
)

// Dial starts connecting to address (ConnectEx) and returns at once: a
// completion of op OpDial, carrying key and tag, follows with the new
// connection in Completion.Conn, its completion key set to key, or with
// Err saying why there is none. A refused connection completes with an
// *OpError that errors.Is matches to syscall.ECONNREFUSED; a dial still
// connecting when the port is closed ends unseen, like every completion
// of a closed port (its socket is closed). The completion may come
// before Dial returns: on a port with Config.Handler, the handler may run
// on Dial's caller's goroutine (a connect that failed at once).
//
// network is "tcp", "tcp4", "tcp6" or "unix". For TCP, address is
// "host:port" as for net.Dial: a literal IP address ("127.0.0.1:80",
// "[::1]:80"), an empty or unspecified host meaning the loopback address
// (":80"), or a name ("localhost:80"), which Dial resolves synchronously
// with Go's resolver before it starts (it may block on DNS: resolve
// elsewhere, and dial the literal address, where that matters). Unlike
// net.Dial, only the first address a name resolves to is tried (for
// "tcp", the first IPv4 one). For "unix", address is the socket's path
// (or "@name" for Linux's abstract namespace); an engine that has no Unix
// sockets (iocp) returns an error that matches ErrUnsupported.
//
// An error returned by Dial itself (a closed port: ErrClosed; an unknown
// network, an address that does not resolve, no socket to be had) means
// no completion follows. The kernel's own connect timeout (about two
// minutes on Linux) bounds a dial that gets no answer: DialTimeout sets a
// shorter one.
func (p *Port) Dial(network, address string, key, tag uint64) error {
	_, err := p.dial(network, address, 0, key, tag, nil)
	return err
}

// DialTimeout is Dial with a timeout: a dial still connecting once timeout
// has passed is canceled, its socket closed, and it completes with an
// *OpError that errors.Is matches to os.ErrDeadlineExceeded (the port's
// timer heap watches it: no goroutine or runtime timer of its own). A
// connect that succeeds as the timeout passes may still complete with its
// connection. A timeout of zero or less is no timeout, as Dial.
func (p *Port) DialTimeout(network, address string, timeout time.Duration, key, tag uint64) error {
	_, err := p.dial(network, address, timeout, key, tag, nil)
	return err
}

// dial starts a dial, canceled after timeout if above zero; its
// completion goes to route if not nil (DialNet, whose connection is
// adapted as it is made), else to the port's queue.
func (p *Port) dial(network, address string, timeout time.Duration, key, tag uint64, route *dialRoute) (*dialOwner, error) {
	raddr, err := resolveDial(network, address)
	if err != nil {
		return nil, &OpError{Op: "dial", Backend: p.backend, Err: err}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	// Close waits for this call to leave the engine before closing it.
	p.dialing.Add(1)
	p.mu.Unlock()
	d := &dialOwner{p: p, key: key, tag: tag, raddr: raddr, route: route, inDial: true}
	d.tmr.f = d
	err = p.eng.Dial(raddr, d)
	d.mu.Lock()
	d.inDial = false
	held := d.held
	d.held = Completion{}
	if err == nil && !d.done && timeout > 0 {
		// Watched from now on: the engine has the dial, to cancel. (A
		// closed port schedules nothing: its Close ends the dial.)
		p.timers.schedule(&d.tmr, p.timers.now()+int64(timeout))
	}
	d.mu.Unlock()
	p.dialing.Done()
	if err != nil {
		return nil, &OpError{Op: "dial", Backend: p.backend, Addr: raddr, Err: err}
	}
	if held.Op != 0 {
		// Pushed only now: a handler that runs it here may close the port,
		// which waits for the dials inside the engine, this one no longer.
		d.push(held)
	}
	return d, nil
}

// resolveDial turns Dial's network and address into the address to
// connect to.
func resolveDial(network, address string) (net.Addr, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		a, err := net.ResolveTCPAddr(network, address)
		if err != nil {
			return nil, err
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			// As net.Dial: no host, or an unspecified one, is this
			// machine, in the address's family.
			ip := net.IPv4(127, 0, 0, 1)
			if network == "tcp6" || a.IP != nil && a.IP.To4() == nil {
				ip = net.IPv6loopback
			}
			a = &net.TCPAddr{IP: ip, Port: a.Port}
		}
		return a, nil
	case "unix":
		// sun_path's room, on Linux and Windows alike, with its NUL.
		if address == "" || len(address) >= maxUnixPath {
			return nil, &net.AddrError{Err: "invalid Unix socket path (empty, or 108 bytes or more)", Addr: address}
		}
		return net.ResolveUnixAddr(network, address)
	}
	return nil, net.UnknownNetworkError(network)
}

// maxUnixPath is the size of sockaddr_un's sun_path on Linux and Windows:
// a path must fit with its terminating NUL.
const maxUnixPath = 108

// dialOwner is the port's side of one dial, as its engine sees it
// (engine.DialOwner). Its first fields are set before the engine sees it,
// and read-only after.
type dialOwner struct {
	p     *Port
	key   uint64
	tag   uint64
	raddr net.Addr
	route *dialRoute // where the completion goes instead of the queue (DialNet); nil: the queue

	// tmr is the dial's entry in the port's timer heap (DialTimeout).
	tmr timerEntry

	mu sync.Mutex // guards the fields below; taken before timers.mu
	// inDial says Port.Dial, or expire, is inside the engine (its Dial,
	// its CancelDial): the dial's completion, should it come meanwhile,
	// waits in held to be pushed once out (see complete).
	inDial bool
	held   Completion
	// done says the dial's outcome has come; timedOut, that its timeout
	// expired and canceled it.
	done     bool
	timedOut bool
}

// NewConn makes the Conn of the connection the engine dialed, under the
// dial's key.
func (d *dialOwner) NewConn(ec engine.Conn, laddr, raddr net.Addr) engine.ConnOwner {
	if raddr == nil {
		raddr = d.raddr
	}
	c := newConnAddrs(d.p, ec, laddr, raddr)
	c.key.Store(d.key)
	if d.route != nil {
		// Adapted before anyone sees it: none of its completions can
		// come before.
		c.mu.Lock()
		c.adaptLocked()
		c.mu.Unlock()
	}
	return (*connOwner)(c)
}

// Connected completes the dial with its connection, or closes the
// connection if the port is closed.
func (d *dialOwner) Connected(co engine.ConnOwner) {
	c := (*Conn)(co.(*connOwner))
	if !d.p.adopt(c) {
		c.close()
		if d.route != nil {
			// DialNet waits: it hears of the port's close.
			d.complete(Completion{Op: OpDial, Key: d.key, Tag: d.tag, Err: ErrCanceled})
		}
		return
	}
	d.complete(Completion{Op: OpDial, Key: d.key, Tag: d.tag, Conn: c})
}

// Failed completes the dial with err, the system's error (wrapped here in
// an OpError), ErrCanceled, or, if its timeout canceled it, an OpError of
// os.ErrDeadlineExceeded.
func (d *dialOwner) Failed(err error) {
	d.mu.Lock()
	timedOut := d.timedOut
	d.mu.Unlock()
	switch {
	case timedOut && errors.Is(err, ErrCanceled):
		err = &OpError{Op: "dial", Backend: d.p.backend, Addr: d.raddr, Err: os.ErrDeadlineExceeded}
	case !errors.Is(err, ErrCanceled):
		err = &OpError{Op: "dial", Backend: d.p.backend, Addr: d.raddr, Err: err}
	}
	d.complete(Completion{Op: OpDial, Key: d.key, Tag: d.tag, Err: err})
}

// complete pushes the dial's completion, unless Port.Dial is still inside
// the engine's Dial (a connect that ended at once, or very soon), or
// expire inside its CancelDial: then that pushes it once out. A handler
// run inside the engine could close the port, and Port.Close waits for
// the engine's Dial and CancelDial to return: that would never be.
func (d *dialOwner) complete(c Completion) {
	d.mu.Lock()
	d.done = true
	d.p.timers.remove(&d.tmr)
	if d.inDial {
		d.held = c
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	d.push(c)
}

// push hands the dial's completion to its route, or to the port's queue.
func (d *dialOwner) push(c Completion) {
	if d.route != nil {
		d.route.complete(c)
		return
	}
	d.p.q.push(c)
}

// expire cancels the dial, whose timeout has passed: the port's timer
// heap calls it.
func (d *dialOwner) expire() { d.cancel(true) }

// cancel cancels the dial, unless its outcome came meanwhile or the port
// is closing (whose Close ends the dial); timedOut says its timeout
// passed.
func (d *dialOwner) cancel(timedOut bool) {
	p := d.p
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.dialing.Add(1) // Close waits for the engine's CancelDial to return
	p.mu.Unlock()
	d.mu.Lock()
	cancel := !d.done
	d.timedOut, d.inDial = cancel && timedOut, cancel
	d.mu.Unlock()
	if cancel {
		p.eng.CancelDial(d)
		d.mu.Lock()
		d.inDial = false
		held := d.held
		d.held = Completion{}
		d.mu.Unlock()
		if held.Op != 0 {
			p.dialing.Done()
			d.push(held)
			return
		}
	}
	p.dialing.Done()
}
