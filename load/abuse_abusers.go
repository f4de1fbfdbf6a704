package load

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connState is what the kernel says of a connection (peerState).
type connState struct {
	closed   bool  // the peer closed it: FIN (CLOSE_WAIT) or reset
	reset    bool  // with a reset
	received int64 // bytes received on it
}

// An abuser is one connection of an abuse case.
type abuser struct {
	conn     net.Conn
	start    time.Time // when it connected
	written  atomic.Int64
	received atomic.Int64 // bytes read, for those that read

	// Set once, by the first to see the server close it.
	closedAt atomic.Int64 // nanoseconds from start, plus one; 0 while open
	reset    atomic.Bool  // the server reset it (RST)
	silent   atomic.Bool  // it had received nothing when the server closed it
	why      atomic.Pointer[string]
	stopped  atomic.Int64 // when the tool stopped it, nanoseconds from start, plus one
}

// serverClosed records that the server closed a: how is what showed it.
func (a *abuser) serverClosed(how string, reset, silent bool) {
	if a.closedAt.CompareAndSwap(0, int64(time.Since(a.start))+1) {
		a.reset.Store(reset)
		a.silent.Store(silent)
		a.why.Store(&how)
	}
}

// closedAfter returns how long after connecting the server closed a, and
// whether it did.
func (a *abuser) closedAfter() (time.Duration, bool) {
	t := a.closedAt.Load()
	return time.Duration(t - 1), t != 0
}

// activeFor returns how long a was active: until the server closed it or
// the tool stopped it (or now).
func (a *abuser) activeFor() time.Duration {
	if d, ok := a.closedAfter(); ok {
		return d
	}
	if t := a.stopped.Load(); t != 0 {
		return time.Duration(t - 1)
	}
	return time.Since(a.start)
}

// abusers are the connections of an abuse case and their goroutines.
type abusers struct {
	mu   sync.Mutex
	list []*abuser

	dialFailed atomic.Int64
	firstDial  atomic.Pointer[string]

	wg       sync.WaitGroup
	stop     chan struct{} // closed when the tool stops them
	stopping atomic.Bool   // set before stop closes: errors from then on are the tool's
	once     sync.Once
	blind    atomic.Bool // the states of connections cannot be read here (peerState)
}

func newAbusers() *abusers { return &abusers{stop: make(chan struct{})} }

// dial opens one abuser connection to addr, from local if set, with a
// receive buffer of rcvbuf bytes if positive (set before connecting, so
// that the advertised window is small from the start).
func (g *abusers) dial(ctx context.Context, addr string, local *net.TCPAddr, rcvbuf int) (*abuser, error) {
	d := net.Dialer{Timeout: dialTimeout}
	if local != nil {
		d.LocalAddr = local
	}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setRcvBuf(fd, rcvbuf) }); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		err = explainDial(err)
		if g.dialFailed.Add(1) == 1 {
			s := err.Error()
			g.firstDial.Store(&s)
		}
		return nil, err
	}
	a := &abuser{conn: conn, start: time.Now()}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping.Load() { // close has gone through the list already
		conn.Close()
		return nil, net.ErrClosed
	}
	g.list = append(g.list, a)
	return a, nil
}

// all returns the abusers connected so far.
func (g *abusers) all() []*abuser {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.list[:len(g.list):len(g.list)]
}

// goroutine runs f on a goroutine that stop waits for.
func (g *abusers) goroutine(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// read reads and discards what arrives on a until the connection ends,
// and records the server's close.
func (g *abusers) read(a *abuser) {
	g.goroutine(func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := a.conn.Read(buf)
			a.received.Add(int64(n))
			if err != nil {
				g.failed(a, "read", err)
				return
			}
		}
	})
}

// failed records the error of a read or write on a, which tells of the
// server's close unless the tool is stopping a.
func (g *abusers) failed(a *abuser, op string, err error) {
	if g.stopping.Load() {
		return
	}
	switch {
	case errors.Is(err, io.EOF):
		a.serverClosed("closed (FIN)", false, a.received.Load() == 0)
	case errors.Is(err, syscall.ECONNRESET):
		a.serverClosed("reset (RST)", true, a.received.Load() == 0)
	default:
		a.serverClosed(op+": "+err.Error(), false, a.received.Load() == 0)
	}
}

// write writes b on a, counting what was written; false when it failed.
func (g *abusers) write(a *abuser, b []byte) bool {
	n, err := a.conn.Write(b)
	a.written.Add(int64(n))
	if err != nil {
		g.failed(a, "write", err)
		return false
	}
	return true
}

// stopped reports whether the tool is stopping the abusers.
func (g *abusers) stopped() bool { return g.stopping.Load() }

// poll asks the kernel about every abuser not known closed, for those that
// do not read (peerState); it returns false where it cannot tell, and
// says so in the report.
func (g *abusers) poll() bool {
	if g.stopping.Load() {
		return true // closed by the tool: nothing more to learn
	}
	for _, a := range g.all() {
		if _, closed := a.closedAfter(); closed {
			continue
		}
		st, ok := peerState(a.conn)
		if !ok {
			g.blind.Store(true)
			return false
		}
		a.received.Store(st.received)
		switch {
		case st.reset:
			a.serverClosed("reset (RST)", true, st.received == 0)
		case st.closed:
			// The FIN counts one in the kernel's bytes received.
			a.serverClosed("closed (FIN)", false, st.received <= 1)
		}
	}
	return true
}

// watch polls the abusers' states every interval until they are stopped.
func (g *abusers) watch(interval time.Duration) {
	g.goroutine(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-g.stop:
				return
			case <-tick.C:
				if !g.poll() {
					return
				}
			}
		}
	})
}

// closedAll reports whether the server closed every abuser (and there is
// at least one).
func (g *abusers) closedAll() bool {
	list := g.all()
	for _, a := range list {
		if _, ok := a.closedAfter(); !ok {
			return false
		}
	}
	return len(list) > 0
}

// close stops the abusers: their goroutines end, and their connections
// are reset (SO_LINGER 0), so that what they had not sent stays in no
// kernel buffer of this host.
func (g *abusers) close() {
	g.once.Do(func() {
		g.mu.Lock()
		g.stopping.Store(true)
		g.mu.Unlock()
		close(g.stop)
		for _, a := range g.all() {
			a.stopped.CompareAndSwap(0, int64(time.Since(a.start))+1)
			if tc, ok := a.conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			a.conn.Close()
		}
		g.wg.Wait()
	})
}

// report fills rep with what happened to the abusers.
func (g *abusers) report(rep *AbuserReport) {
	list := g.all()
	rep.Conns = len(list)
	rep.Unknown = g.blind.Load()
	rep.DialFailed = int(g.dialFailed.Load())
	if s := g.firstDial.Load(); s != nil {
		rep.FirstDialError = *s
	}
	var active time.Duration
	for _, a := range list {
		rep.Written += a.written.Load()
		rep.Received += a.received.Load()
		active = max(active, a.activeFor())
		d, closed := a.closedAfter()
		if !closed {
			rep.Open++
			continue
		}
		rep.Closed++
		if a.reset.Load() {
			rep.Reset++
		}
		if a.silent.Load() {
			rep.Silent++
		}
		if rep.Closed == 1 || d < rep.FirstClose {
			rep.FirstClose = d
			if why := a.why.Load(); why != nil {
				rep.How = *why
			}
		}
		rep.LastClose = max(rep.LastClose, d)
	}
	if active > 0 && rep.Written > 0 {
		rep.WrittenPerSec = float64(rep.Written) / active.Seconds()
	}
}
