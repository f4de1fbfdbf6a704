package cport

// Stats are the counters of a port's engine, for metrics. An engine
// leaves at zero what it does not count: the counters say what the engine
// did, not how well, and only their changes over time mean much.
type Stats struct {
	Backend string // the engine's name, as Port.Backend
	Writes  uint64 // write system calls started (sendmsg, writev, WSASend)
	Wakes   uint64 // wake-ups of the engine's own threads or pollers
	Loops   int    // the engine's event loops (io_uring rings, epoll pollers)
	// LoopConns holds the connections of each loop, where the engine
	// deals connections to loops (uring); nil otherwise.
	LoopConns []int
	// Reaped counts the completions taken from the kernel (uring: CQEs).
	Reaped uint64
	// Overflows counts the times the kernel's completion queue was full
	// and completions waited on its overflow list (uring): a sign that
	// Config.RingEntries is too small for the load.
	Overflows uint64
	// Starved counts the receives, of streams and of datagrams, that
	// found every provided receive buffer out (uring: -ENOBUFS), waiting
	// until some come back: a sign that Config.RecvBuffers is too small,
	// or completions held too long.
	Starved uint64
}

// Stats returns the counters of p's engine. It is safe to call at any
// time, after Close too, and costs the engine nothing: it reads counters
// the engine keeps anyway.
func (p *Port) Stats() Stats {
	st := p.eng.Stats()
	return Stats{Backend: p.backend, Writes: st.Writes, Wakes: st.Wakes, Loops: st.Loops, LoopConns: st.LoopConns,
		Reaped: st.Reaped, Overflows: st.Overflows, Starved: st.Starved}
}
