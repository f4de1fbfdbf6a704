package cport_test

import (
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/windows"

	"cport.dev/cport/internal/sockopt"
)

// wantReset fails t unless err, what a client's read (Go's net) ended with,
// is a reset: the peer's abortive close (SO_LINGER with a zero timeout,
// then closesocket), which Windows reports to the reader as WSAECONNRESET
// ("The virtual circuit was reset by the remote side executing a hard or
// abortive close", recv's documentation:
// https://learn.microsoft.com/windows/win32/api/winsock/nf-winsock-recv).
// syscall.ECONNRESET is an Errno Go invents on Windows, which no Winsock
// call returns: sockopt.NetError matches WSAECONNRESET to it.
//
// Under Wine (8.0) the reader sees an end of stream instead: wineserver
// takes the socket's pending error (getsockopt SO_ERROR) when it polls the
// socket and sees the RST arrive, so that the reader's recv(2) finds none
// and returns 0. The reset is sent (internal/engine/iocp's
// TestCloseResetSendsRST shows the stream cut short under Wine), but a Go
// client cannot tell it from a FIN there: the test is skipped then.
func wantReset(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case errors.Is(sockopt.NetError(err), syscall.ECONNRESET):
	case err == nil && underWine():
		t.Skipf("%s: end of stream; a reset under Wine, which reports a reset to a reader that was not waiting as the end of the stream (see wantReset)", what)
	default:
		t.Errorf("%s: %v; want a reset", what, err)
	}
}

// underWine reports whether the tests run under Wine rather than Windows:
// Wine's ntdll exports wine_get_version, Windows' does not.
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}
