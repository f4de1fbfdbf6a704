// Package cport is a completion port for Go: the I/O model of the Windows
// completion port (IOCP), on every operating system.
//
// A program starts asynchronous operations (accept, receive, send) on sockets
// associated with a [Port]; when an operation finishes, the port queues a
// [Completion] naming the operation, the socket's completion key and the
// operation's tag. Any number of workers dequeue completions with
// [Worker.Wait], at most [Config.Concurrency] of them running at once.
//
// The mapping from IOCP:
//
//	CreateIoCompletionPort(INVALID_HANDLE_VALUE) -> Open
//	CreateIoCompletionPort(socket, port, key)    -> Port.Listen, Conn.SetKey
//	AcceptEx, WSARecv, WSASend                   -> Listener.Accept, Conn.Recv, Conn.Send
//	GetQueuedCompletionStatus(Ex)                -> Worker.WaitOne, Worker.Wait
//	PostQueuedCompletionStatus                   -> Port.Post
//	CloseHandle(port)                            -> Port.Close (waiters get ErrClosed)
//	the OVERLAPPED pointer                       -> the operation's tag
//
// Unlike IOCP, receives need no buffer of the caller's: the port lends one
// when data has arrived (on the kernel engines an idle connection holds
// none), and the caller gives it back with [Completion.Release]. Sends take a reference-counted [Msg], so
// one buffer serves a fan-out to any number of connections, and everything
// queued on a connection is written together.
//
// Several engines (backends) implement the same model: "uring" (io_uring,
// Linux 6.0+) and "iocp" (Windows) are true kernel completions, "epoll"
// turns Linux readiness into completions, "portable" runs on Go's net
// package everywhere, and "poll" and "select" exist for the models
// experiment. Config.Backend "auto" takes the best one that opens here;
// [Backends] lists the ones this build has.
package cport
