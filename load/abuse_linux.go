package load

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// readSockstat reads the kernel's TCP socket counts of this network
// namespace: /proc/net/sockstat (its TCP line; orphan, tw, alloc and mem
// count IPv4 and IPv6 alike) and /proc/net/sockstat6 (the TCP6 sockets in
// use, added to InUse).
func readSockstat() (Sockstat, error) {
	data, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return Sockstat{}, err
	}
	s, err := parseSockstat(data, os.Getpagesize())
	if err != nil {
		return s, err
	}
	if data6, err := os.ReadFile("/proc/net/sockstat6"); err == nil {
		for line := range bytes.Lines(data6) {
			f := bytes.Fields(line)
			if len(f) >= 3 && string(f[0]) == "TCP6:" && string(f[1]) == "inuse" {
				n, _ := strconv.Atoi(string(f[2]))
				s.InUse += n
			}
		}
	}
	return s, nil
}

// parseSockstat parses the TCP line of /proc/net/sockstat, such as
// "TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1", mem being in pages of
// pageSize bytes.
func parseSockstat(data []byte, pageSize int) (Sockstat, error) {
	for line := range bytes.Lines(data) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) != "TCP:" {
			continue
		}
		var s Sockstat
		for i := 1; i+1 < len(f); i += 2 {
			n, err := strconv.ParseInt(string(f[i+1]), 10, 64)
			if err != nil {
				return Sockstat{}, fmt.Errorf("/proc/net/sockstat: TCP %s %q: %w", f[i], f[i+1], err)
			}
			switch string(f[i]) {
			case "inuse":
				s.InUse = int(n)
			case "orphan":
				s.Orphan = int(n)
			case "tw":
				s.TimeWait = int(n)
			case "alloc":
				s.Alloc = int(n)
			case "mem":
				s.Mem = n * int64(pageSize)
			}
		}
		return s, nil
	}
	return Sockstat{}, errors.New("/proc/net/sockstat: no TCP line")
}

// TCP states of include/net/tcp_states.h.
const (
	tcpEstablished = 1
	tcpClose       = 7 // after a reset received, among others
	tcpCloseWait   = 8 // the peer's FIN received
)

// peerState reads, from the kernel's TCP_INFO of conn, whether the peer
// closed it (with a FIN or a reset) and how many bytes arrived on it. ok
// is false when the state cannot be read.
func peerState(conn net.Conn) (st connState, ok bool) {
	tc, isTCP := conn.(*net.TCPConn)
	if !isTCP {
		return st, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return st, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return st, false
	}
	st.received = int64(info.Bytes_received)
	switch info.State {
	case tcpCloseWait:
		st.closed = true
	case tcpClose:
		st.closed, st.reset = true, true
	}
	return st, true
}

// setRcvBuf sets the receive buffer of socket fd before it connects: the
// window it advertises is then small from the start.
func setRcvBuf(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}

// processGone reports whether process pid has exited: it no longer exists,
// or it is a zombie its parent has not reaped yet.
func processGone(pid int) (bool, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false, fmt.Errorf("/proc/%d/stat: no state in %q", pid, data)
	}
	state := data[i+2]
	return state == 'Z' || state == 'X', nil
}

// terminate sends SIGTERM to process pid.
func terminate(pid int) error {
	return syscall.Kill(pid, syscall.SIGTERM)
}
