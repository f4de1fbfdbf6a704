package cport

import "cport.dev/cport/internal/engine/iocp"

// osEngines are Windows' engines: the I/O completion port itself.
var osEngines = []engineInfo{
	{"iocp", iocp.Open},
}
