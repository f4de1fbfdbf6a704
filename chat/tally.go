package chat

import "sync/atomic"

// The counters of the relay path (runs relayed, deliveries, messages and
// bytes in and out) are kept without an atomic operation per message, nor
// a cache line shared by the workers: a worker counts in a tally, plain
// fields on its stack, as it handles a batch of completions, then adds the
// tally to its own shard once per batch. Stats sums the shards.

// tally is what a worker relayed while handling a batch of completions.
type tally struct {
	relayed    int64 // runs of whole messages relayed
	deliveries int64 // runs queued to clients
	msgsIn     int64 // messages relayed
	msgsOut    int64 // messages queued to clients
	bytesIn    int64 // bytes received from clients
	bytesOut   int64 // bytes queued to clients
}

// A shard holds the relay counters of one worker, or of the goroutines
// sharing the last shard (the flow goroutine and the bus's deliver
// function). Its padding keeps the counters of two shards off one cache
// line, so that workers never contend for one.
type shard struct {
	relayed, deliveries atomic.Int64
	msgsIn, msgsOut     atomic.Int64
	bytesIn, bytesOut   atomic.Int64
	_                   [128 - 6*8]byte
}

// add adds t to sh and clears t.
func (sh *shard) add(t *tally) {
	if t.relayed != 0 {
		sh.relayed.Add(t.relayed)
		sh.deliveries.Add(t.deliveries)
		sh.msgsIn.Add(t.msgsIn)
		sh.msgsOut.Add(t.msgsOut)
		sh.bytesOut.Add(t.bytesOut)
	}
	if t.bytesIn != 0 {
		sh.bytesIn.Add(t.bytesIn)
	}
	*t = tally{}
}

// sumShards adds the counters of every shard into st.
func sumShards(shards []shard, st *Stats) {
	for i := range shards {
		sh := &shards[i]
		st.Relayed += sh.relayed.Load()
		st.Deliveries += sh.deliveries.Load()
		st.MessagesIn += sh.msgsIn.Load()
		st.MessagesOut += sh.msgsOut.Load()
		st.BytesIn += sh.bytesIn.Load()
		st.BytesOut += sh.bytesOut.Load()
	}
}
