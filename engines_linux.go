package cport

import (
	"cport.dev/cport/internal/engine/epoll"
	"cport.dev/cport/internal/engine/uring"
)

// osEngines are Linux's engines, best first: io_uring's true completions,
// then epoll's readiness turned into completions.
var osEngines = []engineInfo{
	{"uring", uring.Open},
	{"epoll", epoll.Open},
}
