package chat

import "golang.org/x/sys/windows"

// resetSeenAsEOF is true under Wine (8.0), which reports a peer's reset to
// a Go reader that was not waiting in recv as the end of the stream
// (wineserver takes the socket's pending error when it polls the socket);
// Windows reports WSAECONNRESET. The reset itself is checked under Wine by
// internal/engine/iocp's TestCloseResetSendsRST, and on Linux by these tests.
var resetSeenAsEOF = windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
