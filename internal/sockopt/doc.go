// Package sockopt holds the socket plumbing that cport's engines share and
// Go's net package keeps to itself. On Linux: opening a listening socket as
// net.Listen would, but returning the raw non-blocking descriptor;
// converting socket addresses to *net.TCPAddr without waste; telling a
// reset from an end of stream; gathering a send batch into iovecs;
// duplicating a Go socket's descriptor (Dup) and writing a whole buffer to
// a non-blocking one (WriteAll) for the poll loops that read it. On
// Windows: the mapping of Winsock's errors to the POSIX errors the rest of
// cport speaks of (WinError, NetError), which the iocp and portable engines
// share. NetError is the identity on every other system.
package sockopt
