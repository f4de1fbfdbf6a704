// Package epoll is cport's engine for Linux without io_uring. Edge-triggered
// epoll sets, parked in Go's runtime poller, say when a socket is ready; a
// goroutine then makes the non-blocking call (read, writev, accept4) itself
// and reports its outcome to the owners, as a kernel would a completion.
//
// It serves the Linux systems where io_uring is missing or forbidden (old
// kernels, kernel.io_uring_disabled, container seccomp profiles).
//
// # Pollers
//
// A few pollers (min(GOMAXPROCS, 4)), each an epoll instance and one
// goroutine, serve all sockets; connections are spread over them round
// robin, listeners too. Every socket is registered once, edge-triggered, for
// everything it will ever need (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET), so the
// hot path makes no epoll_ctl(2) calls; closing the descriptor removes it
// from its epoll set. An event's data is the descriptor and a generation
// number, never a Go pointer: the engine looks the socket's state up in a
// table indexed by descriptor and drops events of a generation gone by (the
// descriptor was closed, and maybe reused, after the event was queued).
//
// A poller does not block in epoll_wait(2): a goroutine blocked in a system
// call keeps its P until sysmon takes it back (20 µs to 10 ms later), and on
// a 2-core machine two such pollers would stall the workers that much after
// every event. An epoll descriptor is itself pollable, so each one is handed
// to Go's runtime poller (os.NewFile on the non-blocking descriptor,
// RawConn.Read): the poller goroutine calls epoll_wait with a zero timeout
// until its set is drained, then parks in the runtime until the set has
// events again. An idle poller is a parked goroutine: no thread, no P, no
// tick. Closing the os.File wakes it for good, which is how Close stops the
// pollers (the runtime's own eventfd does the waking, so the engine needs
// none of its own; completions go straight to the port's queue and never
// involve the engine).
//
// # Receives
//
// Edge-triggered readiness is heard once, so it is remembered per socket
// (conn.st: readable, hup) until a read says the socket is drained: it
// returns EAGAIN, or fewer bytes than the buffer holds while no EPOLLRDHUP
// or error was seen (data arriving after a read raises a new edge). A read
// happens when the receive is ready (ConnOwner.RecvState: armed, and for a
// multishot receive its last completion released) and the socket is
// readable. Three kinds of goroutine find out that this may have become
// true: the poller (an edge), a worker starting a receive (Conn.Recv) or
// releasing a completion (Conn.Release), and a closer (Conn.Close). Whoever
// finds the read side free takes it (ecReading) and runs readLoop, which
// reads into a buffer taken from the engine's pool just before read(2) (an
// idle connection holds none) and delivers (ConnOwner.Deliver), until
// nothing is left to do; whoever finds it taken sets ecAgain instead, and
// the owner of the read side looks again before it lets go. So one
// goroutine at a time reads a socket, and no edge or state change is lost
// between the owner's last look and its letting go.
//
// # Sends and coalescing
//
// Speed in a broadcast server is messages per write: the engine writes a
// connection with one writev(2) of everything queued on it
// (ConnOwner.SendBatch, up to IOV_MAX messages), and lets queues grow while
// there is other work. Conn.Flush does not write: it puts the connection on
// the engine's FIFO of deferred writes, which the flushers (as many
// goroutines as pollers) drain together, each taking a few connections at
// a time and writing them one after another. So a fan-out queues a message
// on every connection before the first is written, and what queues on a
// connection while the flushers work through the others goes out together
// in its next round: under load, rounds grow longer and writes fuller by
// themselves.
//
// The FIFO is one for all connections, not one per poller, so that the
// round is the same for all: a closed-loop sender (one that sends again
// when its own echo arrives) is written once per round like everyone else,
// and no connection falls more than a round or so behind it. With a FIFO
// per flusher, the connections of a flusher holding no sender had no such
// bound: let that flusher get less CPU, or write fuller and slower batches
// once behind, and their queues grew until the server dropped them as slow
// consumers (a storm of 64 KiB messages, where both senders fell
// on one flusher).
//
// While a worker is running, Flush does not even wake a flusher
// (engine.FlushGate): the worker's Submit does, at the end of its batch,
// once its completions have queued all they will (a batch relaying k
// messages to n connections makes n writes of k messages, not k·n). A
// Submit that finds only a few connections to write (a reply to a request)
// writes them itself, sparing a goroutine switch. The gate's timer
// (Config.FlushDelay) bounds the deferral for a worker that never reaches
// its Submit (say, blocked in user code after a Send). A flusher that
// leaves work behind in the FIFO after its take wakes another, so that
// every flusher joins a big round.
//
// A connection has at most one write in progress (the owner's, between
// Flush and a SendDone that reports nothing more queued); its write token
// travels: the FIFO, a goroutine in write, parked on EPOLLOUT
// (ecWaitOut) after a short write, then the poller. After a whole write that
// found more queued meanwhile, the connection goes back to the FIFO's tail
// rather than being written again at once, so that its next write carries
// more. EPOLLOUT edges are remembered (ecWritable) so that one arriving
// between a short write and the parking is not lost. A failed write shuts
// the socket down, so that the receive ends with the send's error (the
// owner's Deliver reports it).
//
// # Accepts
//
// accept4(2) runs until EAGAIN in whichever goroutine owns the listener's
// accept side (the same take-or-flag scheme as reads: elRunning, elAgain),
// normally its poller. A failure that cost one pending connection
// (ECONNABORTED, EPROTO, EPERM and the network errors accept(2) lists) is
// skipped unreported; only a run of them with no connection in between
// (a listener refused for good would spin) pauses as a shortage does.
// EMFILE, ENFILE, ENOBUFS and ENOMEM are reported once
// per episode (ListenerOwner.AcceptFailed, not final) and pause accepting,
// the socket's pending connections left in its backlog, until a descriptor
// of this engine is closed or a backoff timer (engine.NextAcceptPause)
// fires; then accept4 is tried again, since an edge-triggered set will not
// report the connections already pending. Nothing spins. An accepted socket
// gets its owner (ListenerOwner.NewConn) before it is registered, and is
// handed over (ListenerOwner.Accepted) once it is. If epoll_ctl(2) refuses
// it, the socket is closed and the owner dropped unseen; ENOMEM and ENOSPC
// (fs.epoll.max_user_watches) pause accepting like EMFILE, anything else is
// reported and accepting goes on.
//
// # Dials
//
// Dial opens a non-blocking socket and calls connect(2) on the caller's
// goroutine. A connect that fails at once (a Unix socket nobody listens
// on) is reported at once (DialOwner.Failed); one in progress (or done
// already, as a Unix socket's may be) is registered with a poller like a
// connection, marked ecDialing, and kept in Engine.dials with its owner.
// Its poller's first event finishes it (finishDial): SO_ERROR says how the
// connect ended, and a wake-up with no error and no peer either
// (getpeername fails) is taken for a spurious one, as Go's net takes it,
// the socket waiting for the next. The event's readiness stays in conn.st
// for the connection: a receive armed later reads what came with it. The
// connection is made (DialOwner.NewConn, then Connected) on the poller;
// a failed connect's socket is closed before the owner hears of it.
// Engine.Close, once the pollers are gone, closes the sockets of the dials
// still connecting and ends each with engine.ErrCanceled.
//
// # Adopted sockets
//
// AdoptConn and AdoptListener take a duplicate of the caller's descriptor
// (sockopt.Adopt: checked a TCP or Unix stream socket, made non-blocking),
// which the engine owns from then on as one it accepted or listened on:
// registered with a poller the same way, closed the same way. Detach
// (engine.Detacher), with no receive or write of the port's on its way,
// takes the socket out of its epoll set (EPOLL_CTL_DEL, for a duplicate
// would keep the registration alive) under conn.mu with ecClosed not set,
// so the descriptor is still open, then returns a duplicate of it; the
// port's Close(false) then closes the engine's descriptor as any other.
//
// # Datagram sockets
//
// ListenPacket makes a UDP socket as net.ListenPacket binds it and keeps a
// non-blocking duplicate of its descriptor (sockopt.ListenUDP), registered
// edge-triggered for both directions in a table of its own (its generation
// number's low bits say genPacket). A receive runs recvfrom(2) into a pool
// buffer, on whichever goroutine made the socket's receive ready (the
// poller at EPOLLIN, the caller of Recv or Release), until EAGAIN; each
// datagram is one Deliver. Sends run sendto(2) on the caller of Flush, one
// datagram each (PacketOwner.NextSend); on EAGAIN the datagram waits in the
// socket's state for the next EPOLLOUT, which the poller continues. The
// descriptor is closed once Close was called and neither side runs.
//
// # Closing and descriptor lifetime
//
// A descriptor is closed only when no goroutine is inside a system call on
// it, or it could be reused under that call: Conn.Close marks the socket
// closed (ecClosed), and whichever of the reader (ecReading) and the writer
// (ecWriting, held from the write's start until its SendDone has returned)
// lets go last closes it (ecFdClosed), after taking it out of the table.
// An armed receive then completes with engine.ErrCanceled as soon as it is
// ready, a write parked on EPOLLOUT or pending in the FIFO with
// SendDone(0, engine.ErrCanceled). A Close from inside SendDone (a
// graceful close whose queue is now written) is one of those: the writer
// holds ecWriting, so the descriptor is closed when the writer lets go.
//
// Close(reset) sets ecReset beside ecClosed; whoever closes the descriptor
// sets SO_LINGER {1, 0} on it just before close(2), so the peer gets an RST
// and the kernel keeps no unsent data and no FIN-WAIT state. Without it,
// close(2) sends a FIN after what was written. Conn.Shutdown calls
// shutdown(2) SHUT_WR under conn.mu, and only while ecClosed is not set:
// the descriptor cannot be closed (let alone reused) until ecClosed is set,
// which takes the same lock, so a Shutdown racing with Close either runs
// on the open socket first or does nothing. A failed write shuts the socket
// down both ways (SHUT_RDWR, under ecWriting) so that the receive ends. A
// failed shutdown (ENOTCONN: the connection is gone) is kept in
// conn.shutErr: a receive that finds nothing left to read ends with it, so
// that neither side waits for an end of stream the shutdown did not send.
//
// # Ownership and locks
//
//   - Engine.pollers, pool, gate, fifo.kick: set by Open, read-only after.
//     closed and wg.Add: Engine.mu. lns: Engine.lnMu. The descriptor table:
//     conns.mu for writers, atomic loads for readers (the pollers).
//   - Engine.faults: set by Open, read-only after. Engine.dials:
//     Engine.dialMu, a leaf; a dialing conn's ecDialing is cleared and set
//     again only by its poller.
//   - conn.owner, e, fd, gen: set before the table publishes the conn
//     (owner right after ListenerOwner.NewConn returns, before anything can
//     use it). st, shutErr: conn.mu, which is also held around shutdown(2)
//     in Conn.Shutdown (a system call that does not block).
//   - listener.owner, e, fd, gen, addr, local: set by Listen. st, pause,
//     timer: listener.mu. lastLocal, skips: the goroutine owning the accept
//     side (elRunning).
//   - fifo.q, head: fifo.mu; n: atomic.
//   - poller.events, scratch: the poller's goroutine; likewise a flusher's
//     scratch. Other scratch values: one goroutine at a time (from a
//     sync.Pool).
//
// Lock order: Engine.mu (read) before Engine.lnMu and conns.mu;
// Engine.lnMu before listener.mu; conn.mu, listener.mu, fifo.mu and
// conns.mu are leaves. No lock of the engine's is held while it calls an
// owner (RecvState, Deliver, SendBatch, SendDone, NewConn, Accepted,
// AcceptFailed) or the Port, but for the FlushGate's own, which its timer
// holds while it starts the deferred writes and which nothing else takes
// but Engine.Close. The owners' methods take package cport's locks
// (Conn.mu, the queue's), and a completion they push into a full or closed
// queue is released at once, which calls back into the engine
// (Conn.Release, or Conn.Close from Accepted) and takes conn.mu again. So
// the engine reads an owner's state through its methods, one call at a
// time, and the two sides' locks are never held together.
//
// # Faults
//
// Config.Faults (nil outside tests: one nil check per call) is asked right
// before each system call on a socket (syscall_linux.go): accept4
// (CallAccept), read (CallRecv), writev (CallSend), shutdown, Conn.Shutdown's
// and the one after a failed write (CallShutdown), epoll_ctl's ADD of a
// connection or listener (CallPoll), and, after the real close(2), close
// (CallClose: its error is dropped, the descriptor is gone either way). An
// injected errno replaces the call and takes the real errno's path, but
// for EAGAIN, which here proves no backlog or buffer empty or full: the
// engine keeps the readiness it knew and makes the call again. A dial's own
// calls (socket, connect, the SO_ERROR that ends it) have no fault of
// their own: a dialed connection's later calls are the connection's.
//
// # Buffers the kernel holds
//
// None past a system call. read(2) and writev(2) are synchronous: the
// kernel copies in or out before the call returns, so the engine hands it
// no memory to keep.
//
//   - A receive buffer (engine.Buf, of Config.RecvBufferSize bytes) is
//     taken from the engine's pool right before read(2) and put back at
//     once if nothing was read; with data it goes to the owner (Deliver),
//     and back to the pool on Conn.Release.
//   - The iovecs of a write point into the messages of the connection's
//     send queue, which ConnOwner.SendBatch marks in flight: the owner
//     keeps them until SendDone, which the engine calls only after writev
//     returned. The scratch slices are cleared before SendDone, so the
//     engine holds no reference to a message's bytes afterwards.
//   - The events buffer given to epoll_wait belongs to its poller, and is
//     filled before epoll_wait returns.
package epoll
