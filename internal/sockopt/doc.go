// Package sockopt holds the socket plumbing that cport's Linux engines share
// and Go's net package keeps to itself: opening a listening socket as
// net.Listen would, but returning the raw non-blocking descriptor, and
// converting socket addresses to *net.TCPAddr without waste. On other
// operating systems the package is empty.
package sockopt
