package load

import (
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Bounds of the latency histograms, in nanoseconds, and their precision.
const (
	histMin    = 1
	histMax    = int64(time.Minute)
	histDigits = 3
)

// latencyShardCount is how many histograms the receivers share. A
// histogram per receiver (220 KB each at three digits) makes every record a
// cache miss once there are hundreds; a few shared ones stay in cache, and
// a receiver takes a shard's lock once per latencyBatch runs of latencies, not
// per message.
const latencyShardCount = 8

// latencyBatch is the most runs of latencies (latencyRun) a receiver
// keeps before recording them.
const latencyBatch = 256

// latencyShards are the run's latency histograms.
type latencyShards struct {
	once   sync.Once
	shards [latencyShardCount]latencyShard
}

// A latencyShard is one histogram and its lock, on cache lines of its own.
type latencyShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [48]byte
}

// shard returns the shard of receiver id.
func (l *latencyShards) shard(id int) *latencyShard {
	l.once.Do(func() {
		for i := range l.shards {
			l.shards[i].h = hdrhistogram.New(histMin, histMax, histDigits)
		}
	})
	return &l.shards[id%latencyShardCount]
}

// merged returns one histogram of everything recorded, once no receiver
// records any more.
func (l *latencyShards) merged() *hdrhistogram.Histogram {
	total := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range l.shards {
		if h := l.shards[i].h; h != nil {
			total.Merge(h)
		}
	}
	return total
}

// A latencyRun is n latencies of v nanoseconds in a row: the messages
// of one read carry one receive time, and those of a closed-loop sender's
// batch one send time, so most latencies repeat the one before.
type latencyRun struct{ v, n int64 }

// recordLatency keeps v nanoseconds, clamped to the histograms' range, to
// be recorded at the next flushLatencies.
func (c *client) recordLatency(v int64) {
	v = min(max(v, 0), histMax)
	if k := len(c.lat) - 1; k >= 0 && c.lat[k].v == v {
		c.lat[k].n++
		return
	}
	if len(c.lat) == latencyBatch {
		c.flushLatencies()
	}
	c.lat = append(c.lat, latencyRun{v, 1})
}

// flushLatencies records the latencies kept into the receiver's shard.
func (c *client) flushLatencies() {
	if len(c.lat) == 0 {
		return
	}
	s := c.shard
	s.mu.Lock()
	for _, l := range c.lat {
		s.h.RecordValues(l.v, l.n)
	}
	s.mu.Unlock()
	c.lat = c.lat[:0]
}
