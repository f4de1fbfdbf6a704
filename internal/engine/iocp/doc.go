// Package iocp is cport's engine on a Windows I/O completion port. Every
// socket is associated with the port's completion port and every operation
// (AcceptEx, WSARecv, WSASend) is started overlapped; one goroutine dequeues
// the packets (GetQueuedCompletionStatusEx) and reports each to the owners.
//
// # The completion port and its loop
//
// One completion port per cport Port, created with Config.Concurrency as its
// NumberOfConcurrentThreads. cport's workers do not dequeue from it: they
// wait on the port's common queue, which enforces the concurrency cap
// itself. One engine goroutine (loop) waits on the completion port in
// GetQueuedCompletionStatusEx and turns each packet into the owners' calls
// (ConnOwner.Deliver, ConnOwner.SendDone, ListenerOwner.Accepted), so the OS
// port's own cap never throttles anything: it only ever has one thread.
// Port.Post goes through the common queue too, as for every engine; the
// engine posts a packet of its own (stopKey) only to stop its goroutine. The
// loop's goroutine holds an OS thread while it waits, as Go's own netpoll
// on Windows does.
//
// Completion keys: a socket's key is its slot in the engine's table, an
// index and a generation, never a Go pointer. The slot keeps the socket's
// state, and so the OVERLAPPED structures embedded in it, reachable until
// the packet of every operation started on it has arrived (sock.pending),
// however early package cport drops the connection. A packet's OVERLAPPED
// address is only compared with those of the slot's operations, never
// turned back into a pointer.
//
// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set where Go's internal/poll sets
// it (skipOnSuccess): an operation that completes at once then queues no
// packet and is finished by its caller.
//
// # Receives
//
// A zero-byte WSARecv waits for data, then the socket (in non-blocking mode)
// is drained with recv into buffers from the engine's pool (an
// engine.BufPool) until WSAEWOULDBLOCK, so an idle connection pins no
// buffer. The drain goes on while the receive is ready
// (ConnOwner.RecvState): a multishot receive whose completion is out stops
// draining until Conn.Release.
//
// # Sends
//
// One WSASend in flight per socket, gathering everything queued on the
// connection (ConnOwner.SendBatch, up to maxIov messages) into one WSABUF
// array. Every write starts at once (Conn.Flush); Engine.Submit has nothing
// to do. A failed send that broke the connection (ConnOwner.Broken) shuts
// the socket down and ends the receive; so does a failed Conn.Shutdown,
// whose error the receive then ends with (breakConn).
//
// # Accepts
//
// AcceptEx into a socket created beforehand, then SO_UPDATE_ACCEPT_CONTEXT
// so that getpeername, shutdown and the rest work on it. A socket that
// cannot be created (WSAEMFILE, WSAENOBUFS) is reported
// (ListenerOwner.AcceptFailed, not final) and AcceptEx tried again after a
// pause (engine.NextAcceptPause); so is an AcceptEx that fails for want of
// resources. One that fails for its connection alone or is interrupted
// (transientAccept) is started again at once, unreported.
//
// # Dials
//
// Dial opens an overlapped TCP socket, binds it to its family's wildcard
// address (ConnectEx wants a bound socket), associates it with the
// completion port and starts ConnectEx with the operation a listener uses
// for AcceptEx (sock.aop). Its packet (or the call, when it completes at
// once) ends the dial: SO_UPDATE_CONNECT_CONTEXT, so that getpeername,
// getsockname and shutdown work on the socket, non-blocking mode for the
// receive's drain, then DialOwner.NewConn and Connected; or the socket is
// closed and DialOwner.Failed told. The dialing sockets are kept in
// eng.dials, whose connects the engine's Close cancels (closeSock) before
// it posts stopKey: their packets, which the loop waits for, end the dials
// with engine.ErrCanceled. Unix sockets are refused with an error naming
// the engine (engine.ErrUnsupported): Winsock has AF_UNIX, but no
// ConnectEx for it.
//
// # Adopted sockets
//
// AdoptConn and AdoptListener duplicate the caller's socket
// (WSADuplicateSocket to this process, then WSASocket from its protocol
// information: an overlapped handle of the engine's own), check it is a
// TCP stream socket (AF_UNIX: engine.ErrUnsupported naming the engine, as
// for Dial), listening or connected as asked (SO_ACCEPTCONN,
// getpeername), make a connection non-blocking for the receive's drain,
// and associate it with the port as Listen and AcceptEx's sockets. An
// association belongs to the socket, shared by every duplicate, and a
// socket is associated with one port only: the sockets of Go's net (and,
// since Go 1.26, every overlapped handle given to os.NewFile) are
// associated with the runtime's completion port, so CreateIoCompletionPort
// fails on their duplicates (ERROR_INVALID_PARAMETER), which the engine
// reports as an error matching engine.ErrUnsupported that names it. What
// it adopts is a handle Go does not hold: one inherited from a parent
// process, given as a syscall.Conn of the caller's. Its connections do not
// detach (no engine.Detacher): an association is not undone, and
// FileReplaceCompletionInformation (Windows 8.1 and later), which could,
// is not implemented by Wine (STATUS_NOT_IMPLEMENTED), where the engine's
// tests run.
//
// # Datagram sockets
//
// ListenPacket makes an overlapped UDP socket, bound as Go's net binds one
// ("udp" on a wildcard address: [::], dual-stack), with ICMP reports off
// (SIO_UDP_CONNRESET, best effort: Wine 8 refuses it, and a receive then
// skips WSAECONNRESET and the like), as an unconnected Linux socket hears
// none. A receive is one WSARecvFrom at a time into a pooled buffer, run
// by packetPump (one goroutine at a time, pumping and again, as for a
// connection's receive): the datagram's sender goes to the socket's
// packetState; a datagram longer than the buffer (ERROR_MORE_DATA,
// WSAEMSGSIZE) is delivered truncated, as on Linux. A WSARecvFrom that
// meets one already queued fails at once, but with a warning status
// (STATUS_BUFFER_OVERFLOW), which completes the call as a success would:
// its packet comes unless the socket skips them, and the bytes are in the
// OVERLAPPED's status block, not the call's count (startLocked). Sends
// are one WSASendTo per datagram (PacketOwner.NextSend), the next started
// at the packet of the last. Close cancels both (CancelIoEx) and closes
// the socket; their packets end them.
//
// # Closing
//
// Closing a socket cancels its operations (CancelIoEx, then closesocket);
// their packets still arrive, with ERROR_OPERATION_ABORTED, and complete
// them with engine.ErrCanceled. A graceful close (Conn.Close(false)) comes
// once the connection's queue is written, with no send in flight: it first
// reads and drops the connection's unread input (a bounded amount), for a
// socket closed with unread input is reset rather than shut down (RFC
// 2525, 2.17), and a reset would destroy what is still on its way to the
// peer; closesocket then returns at once (SO_DONTLINGER, the default) and
// the stack still sends what was written, then a FIN. An abortive close
// (Conn.Close(true)) sets SO_LINGER {on, 0 seconds} just before
// closesocket and drops nothing first: the peer gets an RST, and the stack
// keeps nothing of the connection. Conn.Shutdown is shutdown with SD_SEND,
// under sock.mu and only while the socket is open, so that it is ordered
// with a Close racing with it and never names a closed (or reused) handle.
// Package cport may call Close or Shutdown from within ConnOwner.SendDone,
// on the goroutine writing: no lock of the engine's is held there.
// Closing the engine posts stopKey; the loop ends once every
// operation's packet has arrived, and then the completion port handle is
// closed. A GetQueuedCompletionStatusEx blocked on a completion port whose
// handle is closed returns ERROR_ABANDONED_WAIT_0 (documented in
// GetQueuedCompletionStatus); the loop ends on it too, though the engine
// itself closes the handle only after the loop has ended.
//
// # Ownership and locks
//
//   - eng: cfg, port, skip, bufs, done are set by Open, read-only after;
//     inflight and writes are atomic; the slot table (slots, gens, free)
//     and stopping are guarded by eng.mu.
//   - sock: e, conn (a connection's owner, stored right after
//     ListenerOwner.NewConn returns and before Accepted publishes the
//     socket, or DialOwner.NewConn and Connected), ln and laddr (a
//     listener's, set by Listen), dial (a dialing socket's, set by Dial),
//     family, h, key and skip are set before the socket is published,
//     read-only after. eng.dials is guarded by eng.mu.
//     sock.mu guards closed, freed, pending, readPending, pumping, again,
//     readErr, broken, brokenErr and as, and an operation's OVERLAPPED and Pinner
//     while it starts (startLocked) and when its packet arrives (complete).
//     Once the socket is published, every call that names h (WSARecv,
//     the drain's recv, WSASend, AcceptEx, shutdown, setsockopt,
//     CancelIoEx, closesocket) is made under sock.mu while closed is
//     false (closeSock sets it as it closes h), so none names a closed
//     handle, or one Windows has since given to another socket.
//   - The receive: one goroutine at a time runs pump (pumping); a call
//     meanwhile sets again, and the running one looks again before it lets
//     go. A call while the zero-byte receive is pending does nothing: its
//     packet calls pump.
//   - The send: iov and bufs belong to the goroutine writing, one at a time
//     (the owner's send queue starts a write only when none is in flight):
//     the caller of Conn.Flush, then the loop after each packet.
//   - The accept: abuf and pause belong to the goroutine accepting, one at a
//     time: the caller of Listener.Accept, the loop after a packet, or the
//     pause's timer. The timer itself is set and stopped under sock.mu: a
//     Close that stops it before it fires ends the accept
//     (AcceptFailed(ErrCanceled, true)); once fired, acceptNext does.
//
// Lock order: eng.mu and sock.mu are leaves, never held together (register
// and release take them one after the other). No lock of the engine's is
// held while it calls an owner (RecvState, Deliver, SendBatch, SendDone,
// Broken, NewConn, Accepted, AcceptFailed) or the Port (Closed): the owners'
// methods take package cport's locks, and a completion they push into a
// closed or full queue is released at once, which calls back into the
// engine (Conn.Release, Conn.Close from Accepted) and takes sock.mu again.
//
// # Buffers the kernel holds
//
// Windows reads and writes an overlapped operation's memory after the call
// that started it has returned, until its packet is queued. Each operation
// (sock.rop, wop, aop) has a runtime.Pinner that pins that memory when the
// operation starts (startLocked, under sock.mu) and unpins it when its
// packet arrives (complete, under sock.mu), or at once when the operation
// finished in the call and no packet follows. Besides, the socket's slot
// keeps its state reachable until the packet of every operation started on
// it has arrived, so what the kernel writes is neither moved nor freed.
//
//   - ConnectEx's sockaddr (dialState.sa, a heap object of its own) is
//     pinned by the connect's Pinner (sock.aop.pin) beside the sock,
//     until its packet.
//   - The OVERLAPPED of each operation, its byte count, the zero-byte
//     receive's one byte (sock.zb) and AcceptEx's address buffer
//     (sock.abuf) are fields of the sock: each operation pins the sock.
//   - A WSASend's WSABUF array (sock.bufs) and the bytes of the messages it
//     points to are pinned by the send's Pinner too. Winsock captures the
//     WSABUF array during the call (WSASend's documentation), and the owner
//     keeps the messages until ConnOwner.SendDone, which the engine calls
//     only after the packet, once it has unpinned them.
//   - The zero-byte WSARecv's WSABUF is captured during the call.
//   - The drain's recv is synchronous: its engine.Buf, from the pool, is
//     the owner's from Deliver until Conn.Release, then the pool's again.
//   - A datagram socket's WSARecvFrom buffer (packetState.rbuf), its
//     WSABUF, the sender's sockaddr, its length and the flags are pinned
//     by the receive's Pinner (with the packetState) until its packet; the
//     WSASendTo's WSABUF, sockaddr and the datagram's bytes by the send's,
//     the owner keeping the bytes until PacketOwner.SendDone.
//   - The OVERLAPPED_ENTRY array of GetQueuedCompletionStatusEx belongs to
//     the loop and is filled before the call returns.
//
// Engine.Close returns once every operation's packet has arrived. Should one
// never come (the loop gives up 10 seconds after Close) or the loop end for
// another reason with operations in flight, the engine is kept reachable
// for the life of the process (abandoned), those operations still pinned,
// so that nothing the kernel may yet write to is freed.
//
// # Faults
//
// With Config.Faults set (tests only), the engine asks it (faults_windows.go)
// before each call it makes for a socket, and takes an injected errno
// through the path of a real one, wrapped by sockopt.WinError as a real
// one is: CallPoll before CreateIoCompletionPort associates a new socket
// (register: the accepted connection is closed, accepting goes on);
// CallAccept when an AcceptEx completes with a connection, which is then
// closed before the errno is acted on (transient: skipped; out of
// resources: a pause); CallRecv before the zero-byte WSARecv and before
// each recv of the drain; CallSend before WSASend; CallShutdown before
// each shutdown; CallClose after each closesocket, made first. EINTR
// (WSAEINTR) makes the call again.
package iocp
