package load

import "time"

// Report is the outcome of a Run.
type Report struct {
	Addrs   []string `json:"addrs"`   // the servers driven, as Config.Addrs
	Framing string   `json:"framing"` // of the TCP clients, or "websocket" (Config.WebSocket)
	Clients int      `json:"clients"`
	Senders int      `json:"senders"`
	Size    int      `json:"size"`
	Window  int      `json:"window,omitempty"` // closed loop
	Rate    float64  `json:"rate,omitempty"`   // open loop: messages per second per sender

	Setup Setup `json:"setup"`

	Warmup      time.Duration `json:"warmup_ns"`
	Duration    time.Duration `json:"duration_ns"`           // the measured window, as run
	Interrupted bool          `json:"interrupted,omitempty"` // the context ended the run early

	Drain         time.Duration `json:"drain_ns"` // from the senders' stop to the last delivery awaited
	DrainTimedOut bool          `json:"drain_timed_out,omitempty"`

	// Totals over the whole run, warm-up and drain included.
	Sent      int64 `json:"sent"`      // messages the senders wrote
	Delivered int64 `json:"delivered"` // messages the receivers got, duplicates excepted; Sent × Clients when all is well

	// Over the measured window, by receive time.
	Accepted         int64   `json:"accepted"`   // senders' own echoes received
	Deliveries       int64   `json:"deliveries"` // messages received by any client
	AcceptedPerSec   float64 `json:"accepted_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`

	// Latency of the messages carrying a time inside the measured window.
	Latency Latency `json:"latency"`

	Errors Errors `json:"errors"`
	// Disconnect is why the first client that lost its connection lost it.
	Disconnect string `json:"disconnect,omitempty"`

	// Server is, with Config.ServerPIDs, what the server used, or with
	// several servers their sum (PID 0; CPUPerDelivery over every
	// delivery), each one's usage being in PerServer, in the order of
	// Config.Addrs (CPUPerDelivery over the deliveries to its clients).
	Server    *ServerUsage  `json:"server,omitempty"`
	PerServer []ServerUsage `json:"per_server,omitempty"`

	// Driver is what the load process itself used over the measured
	// window, when there was one.
	Driver *DriverUsage `json:"driver,omitempty"`
}

// Failed reports whether a message was lost, duplicated, reordered or
// corrupted, or a connection dropped.
func (r *Report) Failed() bool { return r.Errors.Total() > 0 }

// Setup describes the connect and registration phases.
type Setup struct {
	SourceAddrs int           `json:"source_addrs"` // local addresses the connections came from
	Connect     time.Duration `json:"connect_ns"`
	Register    time.Duration `json:"register_ns"`
	Probes      int           `json:"probes"` // registration probes sent
}

// Latency summarizes a latency histogram.
type Latency struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
}

// ServerUsage is what the server process used over the measured window.
type ServerUsage struct {
	PID    int           `json:"pid"`
	User   time.Duration `json:"cpu_user_ns"`
	System time.Duration `json:"cpu_system_ns"`
	// CPUPercent is user and system time over the window's wall time, in
	// percent of one core.
	CPUPercent float64 `json:"cpu_percent"`
	// CPUPerDelivery is user and system nanoseconds per delivery in the window.
	CPUPerDelivery float64 `json:"cpu_ns_per_delivery"`
	RSS            int64   `json:"rss_bytes"` // VmRSS at the end of the window
	Threads        int     `json:"threads"`   // at the end of the window
	Err            string  `json:"error,omitempty"`
}

// IdleReport is the outcome of Idle.
type IdleReport struct {
	Addrs    []string      `json:"addrs"`
	Clients  int           `json:"clients"`
	Setup    Setup         `json:"setup"`
	Duration time.Duration `json:"duration_ns"` // the idle window, as run

	Interrupted  bool   `json:"interrupted,omitempty"`
	Disconnected int64  `json:"disconnected"` // connections the server dropped
	Disconnect   string `json:"disconnect,omitempty"`

	Server *IdleServer `json:"server,omitempty"` // with Config.ServerPIDs
}

// Failed reports whether the server dropped a connection.
func (r *IdleReport) Failed() bool { return r.Disconnected > 0 }

// IdleServer is what the server process used holding idle connections.
type IdleServer struct {
	PID       int   `json:"pid"`
	RSSBefore int64 `json:"rss_before_bytes"` // before the first connect
	RSSHeld   int64 `json:"rss_held_bytes"`   // with every connection held, at the end
	// RSSPerConn is (RSSHeld - RSSBefore) / Clients.
	RSSPerConn    float64       `json:"rss_per_conn_bytes"`
	User          time.Duration `json:"cpu_user_ns"` // over the idle window
	System        time.Duration `json:"cpu_system_ns"`
	CPUPercent    float64       `json:"cpu_percent"` // of one core, over the idle window
	ThreadsBefore int           `json:"threads_before"`
	ThreadsAfter  int           `json:"threads_after"`
	Err           string        `json:"error,omitempty"`
}

// Phase names a phase of a run, for progress reports.
type Phase string

// Phases of Run and Idle.
const (
	PhaseConnect  Phase = "connect"
	PhaseRegister Phase = "register"
	PhaseWarmup   Phase = "warmup"
	PhaseMeasure  Phase = "measure"
	PhaseDrain    Phase = "drain"
	PhaseIdle     Phase = "idle"
)

// Progress is a snapshot of a run in progress.
type Progress struct {
	Phase Phase
	// Done out of Total: connections for connect, clients registered for
	// register, milliseconds for warmup, measure and idle, deliveries for
	// drain.
	Done, Total int64
	Sent        int64 // messages written so far
	Delivered   int64 // messages received so far, duplicates excepted
	Errors      int64 // duplicated, reordered and corrupted so far
}
