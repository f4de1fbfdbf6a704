package load

import (
	"fmt"
	"time"
)

// A serverMeter measures what the server processes use over the measured
// window: one sample of each at the window's start, one at its end.
type serverMeter struct {
	pids          []int
	before, after []procSample
	errs          []error // by pid: the first sample that failed
}

func newServerMeter(pids []int) *serverMeter {
	return &serverMeter{
		pids:   pids,
		before: make([]procSample, len(pids)),
		after:  make([]procSample, len(pids)),
		errs:   make([]error, len(pids)),
	}
}

// check samples every process once, and returns the first failure.
func (m *serverMeter) check() error {
	for _, pid := range m.pids {
		if _, err := sampleProc(pid); err != nil {
			return fmt.Errorf("load: the server's usage: %w", err) // err names the pid
		}
	}
	return nil
}

// start samples every process at the window's start.
func (m *serverMeter) start() { m.sample(m.before) }

// stop samples every process at the window's end.
func (m *serverMeter) stop() { m.sample(m.after) }

func (m *serverMeter) sample(into []procSample) {
	for i, pid := range m.pids {
		if m.errs[i] == nil {
			into[i], m.errs[i] = sampleProc(pid)
		}
	}
}

// usage returns each server's usage over a window of length window, given
// the deliveries to its clients in the window, and their sum. With one
// server, the sum is that server's usage, and each is nil.
func (m *serverMeter) usage(window time.Duration, deliveries []int64) (sum *ServerUsage, each []ServerUsage) {
	each = make([]ServerUsage, len(m.pids))
	sum = new(ServerUsage)
	var total int64
	for i, pid := range m.pids {
		u := &each[i]
		u.PID = pid
		total += deliveries[i]
		if err := m.errs[i]; err != nil {
			u.Err = err.Error()
			if sum.Err == "" {
				sum.Err = u.Err
			}
			continue
		}
		if window <= 0 {
			continue
		}
		b, a := m.before[i], m.after[i]
		u.User, u.System = a.user-b.user, a.system-b.system
		u.CPUPercent = 100 * float64(u.User+u.System) / float64(window)
		if deliveries[i] > 0 {
			u.CPUPerDelivery = float64(u.User+u.System) / float64(deliveries[i])
		}
		u.RSS, u.Threads = a.rss, a.threads
		sum.User += u.User
		sum.System += u.System
		sum.CPUPercent += u.CPUPercent
		sum.RSS += u.RSS
		sum.Threads += u.Threads
	}
	if len(each) == 1 {
		return &each[0], nil
	}
	if sum.Err != "" {
		return &ServerUsage{Err: sum.Err}, each
	}
	if total > 0 {
		sum.CPUPerDelivery = float64(sum.User+sum.System) / float64(total)
	}
	return sum, each
}
