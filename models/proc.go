package models

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of /proc/PID/stat's CPU times (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// usage is what /proc says about a process at one moment.
type usage struct {
	at           time.Time
	user, system time.Duration // /proc/PID/stat: clock ticks, 10 ms resolution
	run          time.Duration // sum of /proc/PID/task/*/schedstat: ns on CPU, exact
	vol, invol   int64         // context switches summed over the threads
	rss          int64
	threads      int
}

func sample(pid int) (usage, error) {
	u := usage{at: time.Now()}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return u, err
	}
	i := bytes.LastIndexByte(stat, ')')
	f := bytes.Fields(stat[i+1:])
	if i < 0 || len(f) < 13 {
		return u, fmt.Errorf("models: %s/stat: unexpected format", dir)
	}
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	u.user = time.Duration(ut) * time.Second / userHZ
	u.system = time.Duration(st) * time.Second / userHZ

	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return u, err
	}
	fields(status, func(k string, v []byte) {
		switch k {
		case "VmRSS":
			n, _ := strconv.ParseInt(string(bytes.TrimSuffix(v, []byte(" kB"))), 10, 64)
			u.rss = n << 10
		case "Threads":
			u.threads, _ = strconv.Atoi(string(v))
		}
	})
	tasks, _ := filepath.Glob(dir + "/task/*")
	for _, t := range tasks {
		if b, err := os.ReadFile(t + "/schedstat"); err == nil {
			if f := bytes.Fields(b); len(f) > 0 {
				ns, _ := strconv.ParseInt(string(f[0]), 10, 64)
				u.run += time.Duration(ns)
			}
		}
		if b, err := os.ReadFile(t + "/status"); err == nil {
			fields(b, func(k string, v []byte) {
				n, _ := strconv.ParseInt(string(v), 10, 64)
				switch k {
				case "voluntary_ctxt_switches":
					u.vol += n
				case "nonvoluntary_ctxt_switches":
					u.invol += n
				}
			})
		}
	}
	return u, nil
}

func fields(b []byte, f func(k string, v []byte)) {
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok {
			f(string(k), bytes.TrimSpace(v))
		}
	}
}

// cpu is the process's CPU time, from schedstat when the kernel keeps it.
func (u usage) cpu() time.Duration {
	if u.run > 0 {
		return u.run
	}
	return u.user + u.system
}
