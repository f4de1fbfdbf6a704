// Package cport is a completion port for Go: the I/O model of the Windows
// completion port (IOCP), on every operating system.
//
// You start an operation (accept, dial, receive, send) and return at once;
// when the kernel has done it, a [Completion] naming the operation, the
// socket's key and the operation's tag waits in the port's queue; any
// number of workers dequeue completions with [Worker.Wait], at most
// [Config.Concurrency] of them running at once.
//
// The mapping from IOCP:
//
//	CreateIoCompletionPort(INVALID_HANDLE_VALUE) -> Open
//	CreateIoCompletionPort(socket, port, key)    -> Port.Listen, Conn.SetKey
//	  (of a socket made elsewhere)               -> Port.AdoptListener, Port.AdoptConn
//	AcceptEx, WSARecv, WSASend                   -> Listener.Accept, Conn.Recv, Conn.Send
//	ConnectEx                                    -> Port.Dial
//	WSARecvFrom, WSASendTo (UDP)                 -> Port.ListenPacket, PacketConn.RecvFrom, PacketConn.SendTo
//	the completion key as a pointer              -> Conn.SetValue, Conn.Value
//	GetQueuedCompletionStatus(Ex)                -> Worker.WaitOne, Worker.Wait
//	PostQueuedCompletionStatus                   -> Port.Post
//	CreateTimerQueueTimer + PostQueuedCompletionStatus
//	  in its callback                            -> Port.Timer (OpTimer), Timer.Stop
//	  (a receive's or send's timeout)            -> Conn.SetReadDeadline, Conn.SetWriteDeadline
//	CloseHandle(port)                            -> Port.Close (waiters get ErrClosed)
//	the OVERLAPPED pointer                       -> the operation's tag
//
// A port may also run its completions where they complete instead of
// queuing them ([Config.Handler]): a receive is then handled, and its reply
// sent, by the engine goroutine that read it, the fastest path for
// request-response servers.
//
// Unlike IOCP, receives need no buffer of the caller's: the port lends one
// when data has arrived (on the kernel engines an idle connection holds
// none), and the caller gives it back with [Completion.Release]. Sends take
// a reference-counted [Msg], so one buffer serves a fan-out to any number
// of connections, and everything queued on a connection is written
// together.
//
// Timers complete on the port too ([Port.Timer]), and so do deadlines: a
// receive or send that does not complete in time ([Conn.SetReadDeadline],
// [Conn.SetWriteDeadline]) completes with an error matching
// os.ErrDeadlineExceeded. All of a port's timers and deadlines wait in one
// heap, driven by one runtime timer: none costs a goroutine.
//
// Datagram sockets (UDP) are associated with a port too
// ([Port.ListenPacket]): a receive ([PacketConn.RecvFrom], or
// [PacketConn.RecvFromMulti], which on io_uring is one multishot recvmsg)
// completes with the datagram in a lent buffer and its sender in
// [Completion.Addr], a netip.AddrPort that costs no allocation; a send
// ([PacketConn.SendTo]) takes a Msg and a destination and completes once
// the kernel has the datagram. Every engine truncates a datagram longer
// than Config.RecvBufferSize-64 bytes alike.
//
// Code written for Go's net runs on a port too: a connection or listener
// adapted to net.Conn or net.Listener ([Conn.NetConn],
// [Listener.NetListener], [Port.DialNet]) completes into its adapter,
// whose Read, Write and Accept block as net's do, with net's deadlines
// and errors, so that crypto/tls, net/http and WebSocket libraries serve
// on the port's engine unchanged.
//
// Several engines (backends) implement the same model, each in a package
// of its own under internal/engine behind one contract: "uring" (io_uring,
// Linux 6.0+) and "iocp" (Windows) are true kernel completions, "epoll"
// turns Linux readiness into completions, and "portable" runs on Go's net
// package everywhere. Config.Backend "auto" takes the best one that opens
// here; [Backends] lists the ones this build has.
package cport
