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
