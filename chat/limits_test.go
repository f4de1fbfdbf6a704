package chat

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestConfigValidate checks that New rejects every field out of range,
// naming the field, the value and the range, and accepts zero (the
// defaults) and the negative values that mean "never" or "no cap".
func TestConfigValidate(t *testing.T) {
	base := Config{Addr: "127.0.0.1:0", Backend: "portable"}
	tests := []struct {
		name   string
		change func(*Config)
		field  string // the field named; "" for a valid Config
		value  string // the value named
	}{
		{"zero", func(*Config) {}, "", ""},
		{"never", func(c *Config) {
			c.WriteTimeout, c.MessageTimeout, c.HalfCloseTimeout, c.HalfCloseMax, c.SenderLimit = -1, -1, -1, -1, -1
		}, "", ""},
		{"limits", func(c *Config) {
			c.MaxConns, c.MaxConnsPerIP, c.AcceptRate, c.AcceptBurst = 10, 2, 0.5, 3
		}, "", ""},
		{"queue holds a frame", func(c *Config) { c.Framing, c.MaxMessage, c.SendQueue = Frame, 100<<10, 100<<10+4 }, "", ""},
		{"raw small queue", func(c *Config) { c.MaxMessage, c.SendQueue = 100, 100 }, "", ""},
		{"workers", func(c *Config) { c.Workers = -1 }, "Workers", "-1"},
		{"max message", func(c *Config) { c.MaxMessage = -5 }, "MaxMessage", "-5"},
		{"send queue", func(c *Config) { c.SendQueue = -1 }, "SendQueue", "-1"},
		{"send queue below message", func(c *Config) { c.Framing, c.MaxMessage, c.SendQueue = Line, 1<<20, 1<<19 }, "SendQueue", "524288"},
		{"send queue below frame", func(c *Config) { c.Framing, c.SendQueue = Frame, 64<<10 }, "SendQueue", "65536"},
		{"send queue below a read", func(c *Config) { c.Framing, c.MaxMessage, c.SendQueue = Line, 100, 1000 }, "SendQueue", "1000"},
		{"default send queue below message", func(c *Config) { c.Framing, c.MaxMessage = Line, 8<<20 }, "SendQueue", "4194304 (the default)"},
		{"max conns", func(c *Config) { c.MaxConns = -1 }, "MaxConns", "-1"},
		{"max conns per ip", func(c *Config) { c.MaxConnsPerIP = -2 }, "MaxConnsPerIP", "-2"},
		{"accept rate", func(c *Config) { c.AcceptRate = -1 }, "AcceptRate", "-1"},
		{"accept rate NaN", func(c *Config) { c.AcceptRate = math.NaN() }, "AcceptRate", "NaN"},
		{"accept rate Inf", func(c *Config) { c.AcceptRate = math.Inf(1) }, "AcceptRate", "+Inf"},
		{"message rate", func(c *Config) { c.MessageRate = -1 }, "MessageRate", "-1"},
		{"message rate NaN", func(c *Config) { c.MessageRate = math.NaN() }, "MessageRate", "NaN"},
		{"accept burst", func(c *Config) { c.AcceptRate, c.AcceptBurst = 1, -1 }, "AcceptBurst", "-1"},
		{"accept burst alone", func(c *Config) { c.AcceptBurst = 5 }, "AcceptBurst", "5"},
		{"framing", func(c *Config) { c.Framing = 7 }, "Framing", "Framing(7)"},
		{"idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, "IdleTimeout", "-1s"},
		{"shutdown timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }, "ShutdownTimeout", "-1s"},
		{"nats max age", func(c *Config) { c.NATSMaxAge = -time.Minute }, "NATSMaxAge", "-1m0s"},
		{"nats max bytes", func(c *Config) { c.NATSMaxBytes = -1 }, "NATSMaxBytes", "-1"},
		{"nats replicas", func(c *Config) { c.NATSReplicas = 6 }, "NATSReplicas", "6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			srv, err := New(cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New: %v; want a valid Config", err)
				}
				srv.Close()
				return
			}
			if err == nil {
				srv.Close()
				t.Fatalf("New accepted Config.%s out of range", tt.field)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("New: %v; want a *ConfigError of field %s", err, tt.field)
			}
			msg := err.Error()
			if !strings.Contains(msg, "Config."+tt.field+" is "+tt.value+";") || !strings.Contains(msg, "want ") {
				t.Errorf("error %q; want it to name Config.%s, its value %s and the range", msg, tt.field, tt.value)
			}
		})
	}

	// Every field wrong is reported, not only the first.
	err := Config{Workers: -1, MaxConns: -1, AcceptRate: math.NaN()}.Validate()
	for _, f := range []string{"Workers", "MaxConns", "AcceptRate"} {
		if err == nil || !strings.Contains(err.Error(), "Config."+f+" ") {
			t.Errorf("Validate: %v; want it to name %s", err, f)
		}
	}
}

// TestLimitAdmission checks the token bucket and the counts per address,
// on a clock of its own.
func TestLimitAdmission(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := newAdmission(Config{MaxConnsPerIP: 2, AcceptRate: 10, AcceptBurst: 3}, t0)
	ip1, ip2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	steps := []struct {
		ip   netip.Addr
		at   time.Duration
		want verdict
	}{
		{ip1, 0, admitted},
		{ip1, 0, admitted},
		{ip1, 0, overPerIP}, // takes no token
		{ip2, 0, admitted},  // the third token
		{ip2, 0, overRate},
		{ip2, 50 * time.Millisecond, overRate}, // half a token
		{ip2, 100 * time.Millisecond, admitted},
		{ip2, 100 * time.Millisecond, overPerIP},
		{netip.MustParseAddr("192.0.2.3"), 10 * time.Second, admitted}, // the bucket holds 3 at most
		{netip.MustParseAddr("192.0.2.4"), 10 * time.Second, admitted},
		{netip.MustParseAddr("192.0.2.5"), 10 * time.Second, admitted},
		{netip.MustParseAddr("192.0.2.6"), 10 * time.Second, overRate},
	}
	for i, st := range steps {
		if got := a.admit(st.ip, t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d: admit(%v) at +%v = %d; want %d", i, st.ip, st.at, got, st.want)
		}
	}
	a.leave(ip1)
	if got := a.admit(ip1, t0.Add(time.Minute)); got != admitted {
		t.Errorf("after a connection of %v left: %d; want admitted", ip1, got)
	}
	for _, ip := range []netip.Addr{ip1, ip1, ip2, ip2, netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4"), netip.MustParseAddr("192.0.2.5")} {
		a.leave(ip)
	}
	if len(a.perIP) != 0 {
		t.Errorf("perIP holds %v after every connection left", a.perIP)
	}

	// Addresses: an IPv4-mapped address counts as its IPv4 address.
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}, "127.0.0.1"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1}, "127.0.0.2"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "lo"}, "fe80::1"},
		{nil, "invalid IP"},
	} {
		if got := ipOf(tt.addr).String(); got != tt.want {
			t.Errorf("ipOf(%v) = %s; want %s", tt.addr, got, tt.want)
		}
	}
}

// TestLimitPerIP connects more than MaxConnsPerIP clients from one
// address: those past the cap are reset at once and counted, the others
// chat on, another address has a budget of its own, and a place freed is
// taken again.
func TestLimitPerIP(t *testing.T) {
	const limit = 3
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MaxConnsPerIP = limit
		srv := startServer(t, cfg)
		var cs []*client
		for i := range limit {
			cs = append(cs, srv.dial(fmt.Sprint("a", i), keepReads))
		}
		srv.waitActive(limit)
		for range 5 {
			expectRefused(t, &net.Dialer{}, srv.addr())
		}
		srv.waitStats("5 refused", func(st Stats) bool { return st.RefusedPerIP == 5 })
		line := srv.waitLog("connection refused", "reason=max-conns-per-ip")
		if !strings.Contains(line, fmt.Sprint("max=", limit)) {
			t.Errorf("log line %q; want it to give the cap", line)
		}

		// Another address, another budget.
		other := &net.Dialer{Timeout: longWait, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		for i := range limit {
			cs = append(cs, dialClientWith(t, other, srv.addr(), fmt.Sprint("b", i), keepReads))
		}
		srv.waitActive(2 * limit)
		expectRefused(t, other, srv.addr())

		// Those held chat on.
		m1 := encode(s.framing, "still here")
		cs[0].send(m1)
		for _, c := range cs {
			c.expect(m1)
		}

		// One leaves: a newcomer from its address takes its place.
		cs[1].conn.Close()
		srv.waitActive(2*limit - 1)
		nc := srv.dial("newcomer", keepReads)
		srv.waitActive(2 * limit)
		m2 := encode(s.framing, "welcome")
		nc.send(m2)
		nc.expect(m2)
		cs[0].expect(concat(m1, m2))
		st := srv.Stats()
		if st.Refused != 6 || st.RefusedPerIP != 6 || st.RefusedRate != 0 || st.Accepted != 2*limit+1 {
			t.Errorf("stats %+v; want 6 refused, by MaxConnsPerIP, and %d accepted", st, 2*limit+1)
		}
	})
}

// TestLimitPerIPMaxConns checks that a connection refused by MaxConns does
// not stay counted against its address.
func TestLimitPerIPMaxConns(t *testing.T) {
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MaxConns, cfg.MaxConnsPerIP = 1, 2
		srv := startServer(t, cfg)
		first := srv.dial("first", keepReads)
		srv.waitActive(1)
		for i := range 3 { // refused by MaxConns: each would count otherwise
			c := srv.dial(fmt.Sprint("refused", i), keepReads)
			c.waitEnd()
		}
		srv.waitStats("3 refused", func(st Stats) bool { return st.Refused == 3 })
		first.conn.Close()
		srv.waitActive(0)
		second := srv.dial("second", keepReads)
		srv.waitActive(1)
		m := encode(s.framing, "hello")
		second.send(m)
		second.expect(m)
		if st := srv.Stats(); st.RefusedPerIP != 0 || st.Refused != 3 {
			t.Errorf("stats %+v; want 3 refused by MaxConns, none by MaxConnsPerIP", st)
		}
	})
}

// TestLimitAcceptRate checks that connections past the burst of
// AcceptRate are reset at once and counted, the others chatting on.
func TestLimitAcceptRate(t *testing.T) {
	const burst = 3
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.AcceptRate, cfg.AcceptBurst = 0.001, burst // no token comes back during the test
		srv := startServer(t, cfg)
		var cs []*client
		for i := range burst {
			cs = append(cs, srv.dial(fmt.Sprint("c", i), keepReads))
		}
		srv.waitActive(burst)
		for range 4 {
			expectRefused(t, &net.Dialer{}, srv.addr())
		}
		srv.waitStats("4 refused", func(st Stats) bool { return st.RefusedRate == 4 })
		srv.waitLog("connection refused", "reason=accept-rate", "burst=3")
		m := encode(s.framing, "still here")
		cs[2].send(m)
		for _, c := range cs {
			c.expect(m)
		}
		if st := srv.Stats(); st.Refused != 4 || st.Accepted != burst || st.Active != burst {
			t.Errorf("stats %+v; want %d accepted and held, 4 refused", st, burst)
		}
	})
}

// dripStart returns the start of a message that the client never
// completes: 2 bytes of a frame header announcing 60,000 bytes, or the
// start of a line.
func dripStart(f Framing) []byte {
	if f == Frame {
		return []byte{0, 0}
	}
	return []byte("drip")
}

// dripNext returns the i-th byte of the drip after dripStart.
func dripNext(f Framing, i int) byte {
	if f == Frame {
		switch i {
		case 0:
			return 0xea // 0x0000ea60: 60,000 bytes
		case 1:
			return 0x60
		}
	}
	return 'x'
}

// TestDrip has a client start a message and drip a byte of it every 50ms:
// it is reset, as bad input, MessageTimeout after the first byte and not
// before, while another client chats on.
func TestDrip(t *testing.T) {
	runMatrixParallel(t, []Framing{Line, Frame}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MessageTimeout = 300 * time.Millisecond
		srv := startServer(t, cfg)
		g1, g2 := srv.dial("good1", keepReads), srv.dial("good2", keepReads)
		d := srv.dial("dripper", keepReads)
		srv.waitActive(3)

		// The good client chats meanwhile.
		g := msgGen{f: s.framing, maxPad: 20}
		stop := make(chan struct{})
		res := make(chan floodResult, 1)
		go func() {
			var r floodResult
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				m := g.msg(0, r.sent)
				if r.err = g1.write(m); r.err != nil {
					break
				}
				r.sent++
				r.bytes += len(m)
				select {
				case <-tick.C:
					continue
				case <-stop:
				}
				break
			}
			res <- r
		}()

		first := time.Now()
		d.send(dripStart(s.framing))
		type drip struct {
			n   int
			err error
		}
		dripped := make(chan drip, 1)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			var r drip
			for ; d.isOpen(); r.n++ {
				<-tick.C
				if r.err = d.write([]byte{dripNext(s.framing, r.n)}); r.err != nil {
					break
				}
			}
			dripped <- r
		}()
		err := d.waitEnd()
		took := time.Since(first)
		if took < cfg.MessageTimeout {
			t.Errorf("the dripping client was disconnected %v after its first byte; MessageTimeout is %v", took, cfg.MessageTimeout)
		}
		dr := <-dripped
		// The reset goes to the first call to see it: a write of the drip,
		// or the read (which then sees an end of stream).
		if !isReset(err) && !isReset(dr.err) {
			t.Errorf("the dripping client's stream ended with %v, its writes with %v; want a reset (ECONNRESET)", err, dr.err)
		}
		t.Logf("disconnected %v after its first byte, having dripped %d more", took.Round(time.Millisecond), dr.n)
		line := srv.waitLog("client disconnected", "peer="+d.localAddr()+" ")
		if !strings.Contains(line, "bad input") || !strings.Contains(line, "message timeout") {
			t.Errorf("log line %q; want the reason: bad input, message timeout", line)
		}
		st := srv.waitStats("the dripper gone", func(st Stats) bool { return st.Active == 2 })
		if st.MessageTimeouts != 1 || st.BadInput != 1 || st.SlowConsumers+st.IdleTimeouts != 0 {
			t.Errorf("stats %+v; want 1 message timeout, counted as bad input, nothing else", st)
		}

		// The good clients got every message, and nothing of the drip.
		close(stop)
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		for _, c := range []*client{g1, g2} {
			if err := c.waitN(r.bytes); err != nil {
				t.Fatal(err)
			}
			data, _, _ := c.received()
			if _, err := g.check(data, map[int]int{0: r.sent}, false); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			if !c.isOpen() {
				t.Errorf("%s: its stream ended", c.name)
			}
		}
	})
}

// TestDripCompletes has a client send messages in pieces for several
// MessageTimeouts on end, each message completing well within it, a read
// completing one starting the next: the deadline is each message's, so it
// stays.
func TestDripCompletes(t *testing.T) {
	runMatrixParallel(t, []Framing{Line, Frame}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MessageTimeout = time.Second
		srv := startServer(t, cfg)
		r := srv.dial("reader", keepReads)
		c := srv.dial("sender", discardReads)
		srv.waitActive(2)
		g := msgGen{f: s.framing, minPad: 10, maxPad: 20}
		const n = 20
		pieces := func(seq int) [3][]byte {
			m := g.msg(0, seq)
			k := len(m) / 3
			return [3][]byte{m[:k], m[k : 2*k], m[2*k:]}
		}
		start := time.Now()
		var span time.Duration // the longest a message took to send
		began := start
		err := c.write(pieces(0)[0])
		for seq := 0; seq < n && err == nil; seq++ {
			p := pieces(seq)
			time.Sleep(50 * time.Millisecond) // the pace of the pieces, not a wait for the server
			if err = c.write(p[1]); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
			last := p[2]
			if seq+1 < n {
				last = concat(p[2], pieces(seq + 1)[0]) // the read that completes a message starts the next
			}
			err = c.write(last)
			span = max(span, time.Since(began))
			began = time.Now()
		}
		if err == nil {
			err = r.waitN(g.size(0, n))
		}
		if err != nil {
			if span >= cfg.MessageTimeout/2 {
				t.Skipf("%v (a message took %v to send: too loaded to judge)", err, span)
			}
			t.Fatalf("%v; stats %+v", err, srv.Stats())
		}
		if took := time.Since(start); took < 2*cfg.MessageTimeout {
			t.Fatalf("sent in %v: want more than 2 MessageTimeouts of messages in pieces", took)
		}
		data, _, _ := r.received()
		if _, err := g.check(data, map[int]int{0: n}, false); err != nil {
			t.Fatal(err)
		}
		if st := srv.Stats(); st.MessageTimeouts != 0 || st.Active != 2 {
			t.Errorf("stats %+v; want no message timeout, both clients held", st)
		}
	})
}

// TestStall has a client that never reads (a 4 KiB receive buffer) get
// relayed more than the kernel buffers, less than its SendQueue: it is
// reset as a slow consumer after WriteTimeout, and the others lose
// nothing.
func TestStall(t *testing.T) {
	runMatrix(t, []Framing{Line, Frame}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.SendQueue = 64 << 20
		cfg.WriteTimeout = 500 * time.Millisecond
		srv := startServer(t, cfg)
		fl := srv.dial("flooder", discardReads)
		r1 := srv.dial("reader", keepReads)
		stalled := srv.dial("stalled", noReads)
		if err := stalled.conn.SetReadBuffer(4 << 10); err != nil {
			t.Fatal(err)
		}
		srv.waitActive(3)

		// 12 MiB: more than the server's send buffer (4 MiB at most,
		// net.ipv4.tcp_wmem) and the client's receive buffer.
		g := msgGen{f: s.framing, minPad: 16 << 10, maxPad: 16 << 10}
		count := (12 << 20) / len(g.msg(0, 0))
		fr := flood(fl, g, 0, count, []*client{fl, r1}, 1<<20, nil)
		if fr.err != nil {
			t.Fatal(fr.err)
		}
		st := srv.waitStats("the stalled client gone", func(st Stats) bool { return st.Active == 2 })
		if st.WriteTimeouts != 1 || st.SlowConsumers != 1 || st.BadInput+st.IdleTimeouts != 0 {
			t.Errorf("stats %+v; want 1 slow consumer, by WriteTimeout", st)
		}
		line := srv.waitLog("client disconnected", "peer="+stalled.localAddr()+" ")
		if !strings.Contains(line, "slow consumer") || !strings.Contains(line, "write timeout") {
			t.Errorf("log line %q; want the reason: slow consumer, write timeout", line)
		}
		// Reset: the kernel keeps nothing of it.
		waitSocketGone(t, srv.addr(), stalled.localAddr())
		stalled.startReading(discardReads)
		if err := stalled.waitEnd(); !isReset(err) {
			t.Errorf("the stalled client's stream ended with %v; want a reset (ECONNRESET)", err)
		}

		// The others got everything, and chat on.
		for _, c := range []*client{fl, r1} {
			if err := c.waitN(fr.bytes); err != nil {
				t.Fatal(err)
			}
		}
		data, _, _ := r1.received()
		if _, err := g.check(data, map[int]int{0: fr.sent}, false); err != nil {
			t.Fatalf("reader: %v", err)
		}
		m := encode(s.framing, "after")
		r1.send(m)
		r1.expect(append(data, m...))
		if !fl.isOpen() || !r1.isOpen() {
			t.Errorf("a client that reads was disconnected; stats %+v", srv.Stats())
		}
	})
}

// TestLimitRefusedLog checks that a flood of refused connections makes a
// few log lines, whose counts add up to the refusals.
func TestLimitRefusedLog(t *testing.T) {
	n := scale(500, 150)
	runMatrix(t, []Framing{Line}, func(t *testing.T, s setup) {
		cfg := s.config()
		cfg.MaxConnsPerIP = 1
		srv := startServer(t, cfg)
		srv.dial("held", keepReads)
		srv.waitActive(1)
		start := time.Now()
		for range n {
			expectRefused(t, &net.Dialer{}, srv.addr())
		}
		srv.waitStats("every client refused", func(st Stats) bool { return st.RefusedPerIP == int64(n) })
		var lines []string
		srv.waitStats("the log to count every refusal", func(Stats) bool {
			lines = srv.log.lines("connection refused")
			return sumCounts(t, lines, "count") == n
		})
		if most := int(time.Since(start)/eventEvery) + 1; len(lines) > most {
			t.Errorf("%d log lines for %d refusals in %v; want at most one per %v:\n%s",
				len(lines), n, time.Since(start), eventEvery, strings.Join(lines, "\n"))
		}
	})
}

// expectRefused dials addr with d and checks that the connection is reset
// at once, before it is even established (the dial fails) or after.
func expectRefused(t *testing.T, d *net.Dialer, addr string) {
	t.Helper()
	d.Timeout = longWait
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		if !isReset(err) {
			t.Fatalf("dial %s: %v; want it accepted, or reset", addr, err)
		}
		return
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(longWait))
	if _, err := nc.Read(make([]byte, 1)); !isReset(err) {
		t.Errorf("%s: the stream ended with %v; want a reset (ECONNRESET)", nc.LocalAddr(), err)
	}
}

// sumCounts adds up the key=N of log lines.
func sumCounts(t *testing.T, lines []string, key string) int {
	t.Helper()
	sum := 0
	for _, line := range lines {
		_, v, ok := strings.Cut(line, " "+key+"=")
		v, _, _ = strings.Cut(v, " ")
		var n int
		if _, err := fmt.Sscan(v, &n); !ok || err != nil {
			t.Fatalf("log line %q: no %s=N", line, key)
		}
		sum += n
	}
	return sum
}
