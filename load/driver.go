package load

import (
	"runtime"
	"time"
)

// DriverUsage is what the load process itself used over the measured
// window: what measuring costs, to compare with what the server used.
type DriverUsage struct {
	User   time.Duration `json:"cpu_user_ns"`
	System time.Duration `json:"cpu_system_ns"`
	// CPUSeconds is user and system time, in seconds.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPercent is user and system time over the window's wall time, in
	// percent of one core.
	CPUPercent float64 `json:"cpu_percent"`
	// CPUPerDelivery is user and system nanoseconds per delivery in the window.
	CPUPerDelivery float64 `json:"cpu_ns_per_delivery"`
	// Reads counts the reads that returned data inside the window, over
	// every client; DeliveriesPerRead is the deliveries in the window per read.
	Reads             int64   `json:"reads"`
	DeliveriesPerRead float64 `json:"deliveries_per_read"`
	// EmptyReads counts the reads that found nothing (EAGAIN) inside the
	// window, where the receivers read the sockets themselves (Unix).
	EmptyReads int64 `json:"empty_reads"`
	// MaxRSS is the process's peak resident set size (0 where unknown).
	MaxRSS     int64  `json:"max_rss_bytes,omitempty"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Err        string `json:"error,omitempty"`
}

// A driverMeter measures the load process's own CPU time over a window.
type driverMeter struct {
	start, end selfUsage
	err        error
}

// A selfUsage is the CPU time the load process has used so far, and its
// peak resident set size (0 where unknown). selfCPU() (selfUsage, error)
// takes one: getrusage(2) on Unix (selfcpu_unix.go), the process API on
// Windows (selfcpu_windows.go); it fails elsewhere (selfcpu_other.go).
type selfUsage struct {
	user, system time.Duration
	maxRSS       int64
}

func (m *driverMeter) begin() { m.start, m.err = selfCPU() }

func (m *driverMeter) stop() {
	if m.err == nil {
		m.end, m.err = selfCPU()
	}
}

// usage returns the usage over a window of length d, in which clients
// received deliveries messages in reads reads, and found nothing in empty
// more.
func (m *driverMeter) usage(d time.Duration, deliveries, reads, empty int64) *DriverUsage {
	u := &DriverUsage{Reads: reads, EmptyReads: empty, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if reads > 0 {
		u.DeliveriesPerRead = float64(deliveries) / float64(reads)
	}
	if m.err != nil {
		u.Err = m.err.Error()
		return u
	}
	u.User = m.end.user - m.start.user
	u.System = m.end.system - m.start.system
	u.MaxRSS = m.end.maxRSS
	cpu := u.User + u.System
	u.CPUSeconds = cpu.Seconds()
	if d > 0 {
		u.CPUPercent = 100 * float64(cpu) / float64(d)
	}
	if deliveries > 0 {
		u.CPUPerDelivery = float64(cpu) / float64(deliveries)
	}
	return u
}
