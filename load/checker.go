package load

import "sort"

// Errors counts what went wrong, over all receivers.
type Errors struct {
	Lost       int64 `json:"lost"`       // messages sent that a receiver never got
	Duplicated int64 `json:"duplicated"` // messages a receiver got more than once
	Reordered  int64 `json:"reordered"`  // messages that arrived after a later one of the same sender
	Corrupted  int64 `json:"corrupted"`  // messages whose bytes were not the ones sent
	// Disconnected counts connections that ended before the run closed
	// them (the server dropped a slow consumer, say). What they missed is
	// also counted as lost.
	Disconnected int64 `json:"disconnected"`
}

// Total returns the sum of the counts.
func (e Errors) Total() int64 {
	return e.Lost + e.Duplicated + e.Reordered + e.Corrupted + e.Disconnected
}

func (e *Errors) add(o Errors) {
	e.Lost += o.Lost
	e.Duplicated += o.Duplicated
	e.Reordered += o.Reordered
	e.Corrupted += o.Corrupted
	e.Disconnected += o.Disconnected
}

// verdict is what a checker made of a sequence number.
type verdict uint8

const (
	fresh     verdict = iota // the next one, or past a gap
	late                     // fills a gap: reordered
	duplicate                // seen before
)

// A span is a gap of sequence numbers [lo, hi) not received yet.
type span struct{ lo, hi uint64 }

// maxGaps bounds the gaps remembered per sender: past it, the oldest gap
// is given up as lost (a late arrival into it then counts as a duplicate).
const maxGaps = 1 << 16

// A checker follows, for one receiver, the sequence numbers of every
// sender. It belongs to one goroutine.
type checker struct {
	next  []uint64          // per sender: highest sequence number seen + 1
	gaps  map[uint32][]span // per sender: gaps below next, ascending; nil until one opens
	given uint64            // sequence numbers dropped from gaps for maxGaps
	errs  Errors
}

func newChecker(senders int) checker {
	return checker{next: make([]uint64, senders)}
}

// see records seq from sender, which must be below len(k.next).
func (k *checker) see(sender uint32, seq uint64) verdict {
	next := k.next[sender]
	switch {
	case seq == next:
		k.next[sender] = seq + 1
		return fresh
	case seq > next:
		if k.gaps == nil {
			k.gaps = make(map[uint32][]span)
		}
		g := append(k.gaps[sender], span{next, seq})
		if len(g) > maxGaps {
			k.given += g[0].hi - g[0].lo
			g = g[1:]
		}
		k.gaps[sender] = g
		k.next[sender] = seq + 1
		return fresh
	}
	g := k.gaps[sender]
	i := sort.Search(len(g), func(i int) bool { return g[i].hi > seq })
	if i == len(g) || seq < g[i].lo {
		k.errs.Duplicated++
		return duplicate
	}
	k.errs.Reordered++
	switch s := g[i]; {
	case s.lo+1 == s.hi: // the gap is filled
		g = append(g[:i], g[i+1:]...)
	case seq == s.lo:
		g[i].lo++
	case seq+1 == s.hi:
		g[i].hi--
	default: // split the gap around seq
		g = append(g, span{})
		copy(g[i+1:], g[i:])
		g[i].hi = seq
		g[i+1].lo = seq + 1
	}
	if len(g) == 0 {
		delete(k.gaps, sender)
	} else {
		k.gaps[sender] = g
	}
	return late
}

// missing returns how many of the sent[s] messages of each sender s were
// never seen.
func (k *checker) missing(sent []uint64) int64 {
	n := k.given
	for s, next := range k.next {
		if sent[s] > next {
			n += sent[s] - next
		}
		for _, g := range k.gaps[uint32(s)] {
			n += g.hi - g.lo
		}
	}
	return int64(n)
}
