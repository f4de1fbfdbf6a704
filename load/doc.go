// Package load is the load generator and correctness checker of the chat
// relay (PROTOCOL.md): it opens many client connections to a server, makes
// some of them senders, checks every message that every client receives, and
// measures throughput, latency and, given its process id, the server's CPU
// time and memory.
//
// It drives several servers of one cluster (chat's cluster mode) the same
// way, as one chat room: client i connects to server i mod n, sender j is a
// client of server j mod n, and every message must reach every client of
// every server, once, in per-sender order, as with one server.
//
// # A run
//
// Run goes through five phases:
//
//  1. connect: Clients connections, opened at ConnectRate per second by a
//     few dialing goroutines. Each connection's receive side starts at once
//     (see Costs and limits).
//     Past what one source address can hold (the ephemeral port range of
//     /proc/sys/net/ipv4/ip_local_port_range), or as soon as connect fails
//     with EADDRNOTAVAIL because other processes hold the ports, connections
//     are bound to 127.0.0.2, 127.0.0.3, … (IPv4 loopback servers only).
//  2. register: the registration barrier, below.
//  3. warm-up: the senders run; nothing is measured, everything is checked.
//  4. measure: Duration long; throughput, latency and the server's CPU time
//     are measured over this window only.
//  5. drain: the senders stop; the run waits until every receiver has
//     received every message sent (or DrainTimeout passes), then counts what
//     is missing as lost.
//
// # Registration
//
// A client whose connect returned may still sit in the server's accept
// queue: it misses what is relayed before the server registers it, and a
// checker would count those messages as lost, wrongly. So no sender starts
// before the server has proved that it registered every client, at a cost of
// O(N) messages, not N² (which at 10,000 clients would be 10⁸ deliveries):
// once every connection is open, one client sends a probe message, which the
// server relays to every client it has registered. A client that receives a
// probe was registered before the probe was relayed, hence before any data
// message that is sent after the barrier. When the count of registered
// clients stops rising for a while without reaching N (some clients were
// still being accepted), another probe goes out, at growing intervals, until
// every client has seen one or RegisterTimeout passes. A happy run costs one
// probe: N deliveries. Probes that arrive later are ignored.
//
// With n servers, each round sends n probes, one from the first client of
// each server, and a client counts as registered once it has received a
// probe sent through every server: its server had registered it, and the
// relay from every server to its server (the cluster's bus) was running,
// before any data message was sent. A happy run costs n probes: nN
// deliveries.
//
// # Messages
//
// Every message, data or probe, is Size bytes (for frame framing, the frame's
// payload, its 4-byte header excluded; for line framing, the line with its
// '\n': the server's --max-message convention), made of printable ASCII:
//
//	offset  0  kind          'd' data, 'p' probe
//	offset  1  sender        8 lowercase hex digits: the sender's index (a probe's number)
//	offset  9  sequence      12 hex digits: the sender's message number, from 0
//	offset 21  time          12 hex digits: nanoseconds since the run began,
//	                         when it was sent (closed loop) or due (open loop)
//	offset 33  check         8 hex digits: a hash of kind, sender, sequence and time
//	offset 41  padding       bytes of a fixed pseudo-random pattern, from an
//	                         offset derived from the check
//	(line)     '\n'
//
// A receiver decodes the header (only lowercase hex is valid, so every byte
// has one meaning), recomputes the hash and compares the padding with the
// pattern: a damaged header, a damaged padding or a wrong length is a
// corrupted message. When the header is damaged the message cannot be told
// apart, so its sequence number also shows up as lost.
//
// # Checks
//
// Each receiver tracks, per sender, the highest sequence number seen and the
// gaps below it. A number above the highest opens a gap; one that fills a gap
// is reordered; one seen before is duplicated. After the drain, what is still
// in a gap, plus what the sender sent beyond the highest number seen, is
// lost. Every receiver expects every message, its own included: the server
// must echo (it does unless run with --no-echo).
//
// # Measuring
//
// Closed loop (Rate 0): each sender keeps at most Window of its own messages
// unacknowledged, a message being acknowledged when its echo returns; the
// send time is taken just before the write. Open loop (Rate > 0): each sender
// sends Rate messages per second on a fixed schedule, whatever the echoes
// do, and the time carried is the scheduled one, so that a stall in the
// server or in the sender shows up as latency instead of being hidden
// (coordinated omission); messages that fell behind schedule go out together
// in one write.
//
// Latency is receive time (when the read that completed the message
// returned: the clock is read once per read, not per message) minus carried
// time, both from this process's monotonic clock, for messages that carry a
// time inside the measured window. Each receiver keeps latencies by batches
// of 256 and records a batch at once into one of 8 shared HDR histograms (1
// ns to 1 min, 3 significant digits), under its lock; they are merged at
// the end. Throughput counts by receive time: accepted messages are
// senders' own echoes received inside the window, deliveries are messages
// received by any client inside the window.
//
// The report also gives what the load process itself used over the window
// (Report.Driver, from getrusage(2) on Unix): its CPU time per delivery, to
// weigh against the server's on a shared machine, and its reads and
// deliveries per read. Most of that CPU is the kernel's receive (read(2), recvfrom(2)), whose cost
// on loopback includes sending the ACKs and processing them for the server's
// socket; deliveries per read cannot exceed the messages in flight (Senders
// × Window in closed loop), so that a small window costs the driver more per
// delivery.
//
// # WebSocket clients
//
// With Config.WebSocket, every client is a WebSocket client (RFC 6455) of
// the servers' gateway (chat's Config.WSAddr), which relays between
// WebSocket and TCP clients in one room. A client connects, writes GET
// /ws with a random Sec-WebSocket-Key, reads the response up to its blank
// line and requires 101 and the right Sec-WebSocket-Accept; what came
// after the response already is frames. It sends each message as one
// masked binary frame, encoded into the sender's reused buffer with a
// key from a per-connection xorshift generator; the messages are those of
// frame framing (Size bytes of payload). It reads the server's frames where
// they lie in the inbox, as frames are read in frame framing; only a
// fragmented message is copied, into a reused buffer. It answers a ping
// with a pong and a close with a close, which ends the connection (a
// disconnection, unless the run is closing), as does a protocol error:
// a masked frame, reserved bits, an unknown opcode, a malformed length.
// With Config.TLS, the upgrade follows the TLS handshake (wss).
//
// # Costs and limits
//
// Each client has a 64 KiB read buffer (only its first pages are touched
// while the reader keeps up). On Linux, a plain TCP client has no goroutine
// to read it: a few poll loops (one per CPU, each a goroutine locked to its
// thread) share one edge-triggered epoll set, take the ready sockets in the
// order their data arrived, and read each with recvfrom(2) into its
// client's buffer, one loop at a time, until a read returns short; a read
// costs no goroutine wake-up or switch. One queue for all loops means one
// round for all clients: the closed-loop senders wait for it like every
// other client, so none falls seconds behind them. A loop reads a
// duplicate of the socket's descriptor; a client that never writes after
// the registration (not a sender, nor the probe client of a server) closes
// its connection once the loop has the duplicate, so that the runtime's
// poller is not woken by its arrivals. TLS clients, and the good clients of
// an abuse case, have a reader goroutine each, as every client has
// elsewhere; on Unix it calls read(2) on the socket itself
// (syscall.RawConn), and on Linux, from the senders' start to the drain's,
// it waits for the poller after a short read instead of reading again for
// EAGAIN. Messages are parsed and checked
// where they lie in the buffer; this allocates nothing. Per read, the
// reader takes the clock once and publishes its counters with one atomic
// store (and every 256 messages within a read). Each receiver keeps 8 bytes
// per sender. A process holds at most as many sockets as its open-files
// limit (RLIMIT_NOFILE) allows; Run refuses more clients than that, and a
// test that needs more splits them over several load processes.
package load
