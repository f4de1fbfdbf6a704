// Package uring is cport's engine on Linux 6.0 and later: io_uring, the
// completion port's true counterpart. Accepts, receives and sends are
// io_uring requests whose completion queue entries (CQEs) the engine turns,
// one for one, into reports to the owners (package engine).
//
// The ring itself (io_uring_setup, the queues, provided-buffer rings) is
// package cport.dev/cport/internal/uring, beside this one.
//
// # Rings and loops
//
// A port has one or more io_uring instances, rings (engine.Config.Rings,
// else the environment variable CPORT_URING_RINGS, else one per four CPUs,
// at most four), each owned by one goroutine locked to its OS thread and set
// up with SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them: it alone
// prepares submissions, enters the kernel and reaps completions (the ring's
// loop). A connection belongs to one ring for its whole life, so that the
// kernel work of a fan-out (one sendmsg per connection, most of a broadcast
// server's CPU) is spread over as many threads as there are rings, each with
// its own submission batch. Other goroutines (workers calling Recv, Flush,
// Release, Shutdown, Close) hand a loop requests through a short
// mutex-guarded list and wake it, when it sleeps in io_uring_enter, by
// writing to an eventfd it always has a read pending on.
//
// Accepts are single-shot, several in flight (acceptDepth), all in the
// first ring; the connections they bring are dealt round robin to the
// rings, each taking its connections into its tables when their first
// request comes. Receives are multishot with buffer selection from a
// provided buffer ring, one per ring: the kernel picks a buffer only when
// data has arrived, so an idle connection pins none. Results that arrive
// while the connection's previous completion is out wait in the owner's
// backlog; when the ring runs out of buffers (-ENOBUFS) the receive is
// re-armed once buffers come back. Sends: at most one sendmsg in flight per
// connection (two sends on one TCP socket may interleave, io_uring(7)),
// carrying every message queued meanwhile (ConnOwner.SendBatch), an iovec
// each, or a send (IORING_OP_SEND) when one message is queued. A send that
// completes with more queued is followed by the next at the end of the
// loop's round (sendAgain), so that each connection is sent to once per
// round, with all that the round queued to it. A round's burst of sends
// is submitted, and the completions there are reaped, every burstSends
// sends, so that a receive that completed meanwhile (a sender's next
// message) goes to the workers during the fan-out, not after it. While a
// worker runs, the sends it queues wait for its Submit (engine.FlushGate),
// so that they go out together. A Submit that finds a few connections to
// write (a reply to a request) writes them itself, writev(2) on the
// worker's goroutine with no wake-up of the loop; more (a fan-out) it
// hands to their loops. A worker's write the socket does not take whole
// goes on in the ring (direct_linux.go).
//
// Dials: Dial opens a non-blocking socket on the caller's goroutine and
// posts the connect to a ring (the rings take dials in turn), whose loop
// submits an IORING_OP_CONNECT (probed at setup with the other opcodes);
// the kernel waits for the connect itself and its CQE says how it ended.
// The connection then belongs to that ring. As the loop stops (the
// engine's Close), it cancels the connects still in the kernel, each CQE
// then ending its dial with engine.ErrCanceled.
//
// Adopted sockets: AdoptConn takes a duplicate of the caller's descriptor
// (sockopt.Adopt) and makes a uconn of it in the rings taken in turn, as
// Dial's; AdoptListener makes a ulistener of it in the first ring, as
// Listen's. Detach (engine.Detacher) is a request to the connection's
// loop, which owns its state: the loop checks that the kernel holds no
// receive or send of it (a receive the owner saw end on a failure may
// still be there, being canceled: an error then, as what it reads would
// be lost) and duplicates the descriptor, which the caller waits for. A
// Detach called on the loop itself (a Config.Handler run there) is done
// at once: the loop's thread (ringEngine.tid), locked to it, runs no
// other goroutine, so gettid(2) tells.
//
// Closing: Close is a request to the connection's loop, which cancels what
// the kernel holds of the connection (one cancel of everything on its
// descriptor) and closes the socket once the last CQE is in; with a reset,
// it sets SO_LINGER {on, 0} right before that close, so that the peer gets
// an RST and the kernel keeps nothing of the connection. Shutdown is a
// request too: the loop makes a plain shutdown(2) SHUT_WR, in order with
// the connection's other requests, so that it never meets a descriptor
// closed or reused (a connection closing is not shut down). Both may come
// from within SendDone, on the loop itself: they are then handled at its
// next round.
//
// user_data holds an op kind, a generation and a slot index, never a Go
// pointer.
//
// # Datagram sockets
//
// ListenPacket makes a UDP socket as net.ListenPacket binds it and keeps a
// non-blocking duplicate of its descriptor (sockopt.ListenUDP) in the
// rings taken in turn (a kernel without IORING_OP_RECVMSG is an error
// naming the engine). A multishot receive (RecvFromMulti) is one multishot
// IORING_OP_RECVMSG selecting from the ring's provided buffers, the same
// ones TCP receives take: each buffer starts with an io_uring_recvmsg_out
// header (recvmsgOut), then the sender's sockaddr (room for a
// sockaddr_in6 reserved, whatever the family), then the payload, which the
// owner gets as Buf.B[44:44+n] (Deliver's off). It runs ahead of the
// owner's releases into the owner's backlog until the owner is full, when
// it is canceled and armed again at the owner's next Recv. A single
// receive (RecvFrom) is a single IORING_OP_RECVMSG, the payload at the
// start of the buffer, capped by its one iovec's length, the sockaddr
// written by the kernel into the upacket (an empty datagram takes no
// buffer: it comes in one of the engine's own, noBuf). Sends are one
// IORING_OP_SENDMSG per datagram, one in flight per socket, its msghdr,
// iovec and sockaddr in the upacket. Every engine truncates a datagram at
// len(Buf.B) - engine.PacketHeadroom bytes, so none differs in what it
// delivers.
//
// # Faults
//
// engine.Config.Faults (tests only; nil otherwise, one nil check per call)
// is asked on the loop: CallPoll before each io_uring_enter (submit, wait);
// CallAccept, CallRecv and CallSend as each accept, receive or sendmsg CQE
// is handled (not one of a cancel), and CallSend before a worker's
// writev, the kernel's work undone where it can
// be (an accepted socket closed, a filled buffer recycled, a multishot
// receive canceled); CallShutdown before each shutdown(2) (Conn.Shutdown,
// and a failed send's); CallClose after each close(2) of a socket. A
// dial's connect has no fault of its own.
//
// # Ownership and locks
//
// Fields marked "loop" are touched only by their ring's loop goroutine: the
// tables of connections, listeners and dials, each uconn's, ulistener's
// and udial's state, the send arena, the starved list. Other goroutines reach them only
// through post, which appends to the request list under reqMu. bufMu
// guards the producer side of the buffer ring, lent and bufsClosed, which
// Conn.Release touches from the user's goroutine. The counters read without
// a lock (pending, sleeping, hungry, held, and the engine's sends and
// wakes) are atomic.
//
// A worker writing a connection itself (portEngine.write) holds the
// owner's write token, so no other write of it runs, and uses the
// descriptor only between startWrite and endWrite: uconn.wr's wrWriting
// bit. The loop sets wrClosing before it closes the connection, and
// closes the socket (finishIfQuiet) only once wrWriting is clear; a
// worker that ends its write on a closing connection posts rqQuiet for
// the loop to look again. So the descriptor a worker writes is never
// closed, nor reused by another socket, under it. The list of connections
// waiting for a Submit (portEngine.out) has its own mutex, a leaf. The
// engine's live lock (a sync.RWMutex) is read-held by a Submit while it
// writes and write-held by Close while it sets closed: once Close has it,
// no worker writes, and the loops can end.
//
// The two locks are leaves: neither is held while the other is taken, nor
// while the engine calls an owner. The owners' methods
// (ConnOwner.RecvState, Deliver, SendBatch, SendDone;
// ListenerOwner.AcceptState, NewConn, Accepted, AcceptFailed) are called
// from the loop, with neither bufMu nor reqMu held, and may call back into
// the engine: a Deliver into a closed queue releases the buffer
// (Conn.Release, which takes bufMu and may post), an Accepted on a closing
// port closes the connection (Conn.Close, which posts), and a SendDone that
// ends a graceful close or a CloseWrite closes the connection or shuts it
// down (Conn.Close, Conn.Shutdown, which post). Package cport calls
// the engine without its own locks held, so no lock of either side is ever
// held while one of the other's is taken.
//
// # Buffers the kernel holds
//
//   - Receive buffers are slots of one slab per ring, mmap'd memory outside
//     the Go heap, registered as the ring's provided buffers. The kernel
//     owns a buffer from its recycle until a CQE names it, the user from
//     then until Conn.Release. The slab is unmapped once the ring is closed
//     and the last buffer lent is back.
//   - A send of one message hands the kernel only that message's bytes,
//     held by the owner's send queue until SendDone.
//   - A sendmsg's msghdr and iovec array live in the loop's sendArena,
//     blocks of Go memory each pinned with a runtime.Pinner while the arena
//     keeps it. The kernel copies both when it consumes the entry
//     (IORING_FEAT_SUBMIT_STABLE, which setup requires of the kernel), so
//     they are the kernel's only until the enter after which the
//     submission queue is empty; the arena is then reset and its blocks
//     reused. It keeps as many blocks as recent rounds needed (a burst's go
//     once the load falls), so a round of sendmsgs to thousands of
//     connections allocates nothing. A send of one message (IORING_OP_SEND)
//     has its address and length in the SQE and needs neither.
//   - The bytes the iovecs point to are the messages' (ConnOwner.SendBatch):
//     they stay valid and unchanged until SendDone, which runs on the
//     send's CQE. They are not pinned: they are heap objects (a message's
//     buffer, made by make and held by the message), which Go's collector
//     does not move, kept reachable by the owner's send queue until
//     SendDone.
//   - An accept's sockaddr and its length live in the ulistener (acc), as
//     does the back-off timeout's timespec (ts): the ulistener is pinned with
//     a runtime.Pinner from its first accept until its socket is closed, once
//     no accept, timeout or cancel of its is in the kernel.
//   - A connect's sockaddr and its length live in its udial, which the
//     loop pins with a runtime.Pinner from the submission until the CQE,
//     the kernel's last word on it (kernels of today copy the address
//     when they take the request, but nothing promises it). The udial
//     stays in the loop's table of dials meanwhile.
//   - A datagram socket's msghdrs, iovec and sockaddrs live in its
//     upacket, pinned with a runtime.Pinner from its first request until
//     its socket is closed, once no receive, send or cancel of it is in
//     the kernel. The bytes of the datagram in flight are the owner's
//     (PacketOwner.NextSend) until SendDone, on the send's CQE, and the
//     upacket keeps them reachable (sbuf) meanwhile.
//   - The eventfd read targets wakeBuf, in the ringEngine, pinned from the
//     loop's start to its end. When the loop stops, the read is canceled and
//     its CQE awaited: the ring is closed only once no request of its is in
//     flight.
package uring
