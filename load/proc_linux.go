package load

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: sysconf(_SC_CLK_TCK),
// which is 100 on every Linux architecture Go supports.
const userHZ = 100

// sampleProc reads /proc/PID/stat and /proc/PID/status.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return s, err
	}
	// proc_pid_stat(5): "pid (comm) state ppid …"; comm may hold spaces and
	// parentheses, so fields are counted from the last ')'. utime and stime
	// are fields 14 and 15, the 12th and 13th after comm.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("%sstat: unexpected format", dir)
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("%sstat: unexpected format", dir)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("%sstat: unexpected format", dir)
	}
	s.user = time.Duration(utime) * time.Second / userHZ
	s.system = time.Duration(stime) * time.Second / userHZ

	status, err := os.ReadFile(dir + "status")
	if err != nil {
		return s, err
	}
	for line := range bytes.Lines(status) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch string(k) {
		case "VmRSS": // "12345 kB"
			n, err := strconv.ParseInt(string(bytes.TrimSuffix(v, []byte(" kB"))), 10, 64)
			if err == nil {
				s.rss = n << 10
			}
		case "Threads":
			s.threads, _ = strconv.Atoi(string(v))
		}
	}
	return s, nil
}

// acceptQueued returns how many connections wait in the accept queues of
// the listening TCP sockets on port (/proc/net/tcp and tcp6: a listener's
// rx_queue is its accept backlog), or -1 if it cannot tell. A connection
// queued there is not yet a descriptor of the server's.
func acceptQueued(port int) int {
	total, found := 0, false
	for _, name := range [...]string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		found = true
		for _, line := range bytes.Split(data, []byte("\n"))[1:] {
			f := bytes.Fields(line)
			if len(f) < 5 || string(f[3]) != "0A" { // TCP_LISTEN
				continue
			}
			local, queues := f[1], f[4]
			i, j := bytes.LastIndexByte(local, ':'), bytes.IndexByte(queues, ':')
			if i < 0 || j < 0 {
				continue
			}
			if p, err := strconv.ParseUint(string(local[i+1:]), 16, 16); err != nil || int(p) != port {
				continue
			}
			if n, err := strconv.ParseUint(string(queues[j+1:]), 16, 32); err == nil {
				total += int(n)
			}
		}
	}
	if !found {
		return -1
	}
	return total
}
