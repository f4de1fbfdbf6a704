package chat

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrBusFull is returned by Publish when the publish buffer is full (NATS
// has been unreachable for a long time): the run is not sent to the other
// servers (the local clients got it).
var ErrBusFull = errors.New("chat: bus publish buffer full")

// ErrBusTooLarge is returned by Publish for a run that cannot fit one NATS
// message.
var ErrBusTooLarge = errors.New("chat: run too large for the bus")

const (
	natsBatchMax   = 256 << 10 // body bytes per published message at most
	natsPendingMax = 64 << 20  // body bytes waiting to be published at most
	natsAckWindow  = 1024      // published messages awaiting their ack at most
)

// A natsBus is the Bus of cluster mode: a JetStream stream (memory storage,
// bounded by age and size) on the subject cport.<cluster>.relay, written by
// every server and read by each through its own ordered consumer.
//
// Publish appends to a batch under a mutex, so batches hold the runs in the
// order of the Publish calls; one goroutine (flush) publishes the batches
// in that order, asynchronously, each with the next origin sequence and a
// message id (origin-sequence) that the stream deduplicates on; another
// (acks) waits for the acknowledgements in order and republishes a batch
// whose ack failed. A republished batch can land after later ones: the
// receivers restore each origin's order by its sequence, and drop what they
// have seen.
//
// The ordered consumer starts at the stream's next message and, after a
// reconnect or a lost consumer, recreates itself from the stream sequence
// after the last one delivered; a jump in stream sequences means messages
// aged out of the stream while unreachable: logged and counted as missed.
type natsBus struct {
	cfg     Config
	log     *slog.Logger
	self    uint64
	subject string
	stream  string
	stats   busCounters
	recv    *receiver

	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	cur     []byte   // the batch being filled: header room, then body
	full    [][]byte // batches filled, to publish in order
	pending int      // body bytes in cur and full
	kick    chan struct{}

	acked atomic.Uint64 // every batch up to this origin sequence is stored; written by acks, in order

	ready   chan struct{} // closed when the stream exists
	stop    chan struct{}
	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	cctx    jetstream.ConsumeContext
	done    sync.WaitGroup
	closeMu sync.Once
}

type inflight struct {
	msg *nats.Msg
	seq uint64 // the batch's origin sequence
	paf jetstream.PubAckFuture
}

// NewNATSBus returns the NATS bus that cfg describes (cfg.NATS, Cluster and
// the NATS* fields); Start connects it.
func NewNATSBus(cfg Config) (Bus, error) {
	cfg = cfg.withDefaults()
	if strings.ContainsAny(cfg.Cluster, ".*> \t") {
		return nil, fmt.Errorf("chat: cluster name %q: no dots, wildcards or spaces", cfg.Cluster)
	}
	var id [8]byte
	for binary.BigEndian.Uint64(id[:]) == 0 {
		rand.Read(id[:])
	}
	b := &natsBus{
		cfg:     cfg,
		log:     cfg.Logger.With("bus", "nats", "cluster", cfg.Cluster),
		self:    binary.BigEndian.Uint64(id[:]),
		subject: "cport." + cfg.Cluster + ".relay",
		stream:  "CPORT_" + cfg.Cluster,
		kick:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
		stop:    make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.cur = make([]byte, busHeaderLen, busHeaderLen+4096)
	return b, nil
}

func (b *natsBus) Stats() BusStats { return b.stats.snapshot() }

func (b *natsBus) Start(deliver func(run []byte)) error {
	b.recv = &receiver{self: b.self, framing: b.cfg.Framing, limit: b.cfg.MaxMessage, log: b.log,
		stats: &b.stats, deliver: deliver, origins: make(map[uint64]*originState)}
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("cport-%016x", b.self)),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(natsPendingMax),
		nats.ConnectHandler(func(nc *nats.Conn) {
			b.log.Info("bus connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("bus disconnected", "err", err.Error())
			} else if !nc.IsClosed() {
				b.log.Warn("bus disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.stats.reconnects.Add(1)
			b.log.Info("bus reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if b.cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(b.cfg.NATSCreds))
	}
	if b.cfg.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(b.cfg.NATSTLSCA))
	}
	nc, err := nats.Connect(b.cfg.NATS, opts...)
	if err != nil {
		return fmt.Errorf("chat: bus: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(natsAckWindow),
		jetstream.WithPublishAsyncTimeout(2*time.Second))
	if err != nil {
		nc.Close()
		return fmt.Errorf("chat: bus: %w", err)
	}
	b.nc, b.js = nc, js
	acks := make(chan inflight, natsAckWindow)
	b.done.Add(3)
	go b.setup()
	go b.flush(acks)
	go b.acks(acks)
	return nil
}

// setup creates the stream and starts the consumer, retrying while NATS is
// unreachable: the server serves its local clients meanwhile.
func (b *natsBus) setup() {
	defer b.done.Done()
	dup := min(b.cfg.NATSMaxAge, 2*time.Minute)
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		err := b.start(ctx, dup)
		cancel()
		if err == nil {
			close(b.ready)
			break
		}
		if b.ctx.Err() != nil {
			return // closed
		}
		if try%10 == 0 {
			b.log.Warn("bus: cannot set up the stream yet; retrying", "stream", b.stream, "err", err.Error())
		}
		select {
		case <-b.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-tick.C:
			b.recv.tick(now)
		}
	}
}

func (b *natsBus) start(ctx context.Context, dup time.Duration) error {
	st, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       b.stream,
		Subjects:   []string{b.subject},
		Storage:    jetstream.MemoryStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     b.cfg.NATSMaxAge,
		MaxBytes:   b.cfg.NATSMaxBytes,
		Replicas:   b.cfg.NATSReplicas,
		Duplicates: dup,
		MaxMsgSize: int32(min(natsBatchMax+busHeaderLen+64, 1<<30)),
	})
	if err != nil {
		return err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.subject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	cctx, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			b.stats.dropped.Add(1)
			return
		}
		b.recv.handle(md.Sequence.Stream, m.Data())
	},
		jetstream.PullExpiry(5*time.Second),
		jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.Debug("bus: consumer", "err", err.Error())
		}))
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.cctx = cctx
	b.mu.Unlock()
	b.log.Info("bus: relaying", "stream", b.stream, "subject", b.subject, "origin", fmt.Sprintf("%016x", b.self))
	return nil
}

// Publish appends run to the current batch; it never blocks on NATS.
func (b *natsBus) Publish(run []byte) error {
	rec := len(run)
	if b.cfg.Framing == Raw {
		rec += 4
	}
	if rec > natsBatchMax {
		b.stats.refused.Add(1)
		return ErrBusTooLarge
	}
	b.mu.Lock()
	if b.pending+rec > natsPendingMax {
		b.mu.Unlock()
		if b.stats.refused.Add(1) == 1 {
			b.log.Warn("bus: publish buffer full, runs not relayed to the other servers", "limit_bytes", natsPendingMax)
		}
		return ErrBusFull
	}
	if len(b.cur)-busHeaderLen+rec > natsBatchMax {
		b.full = append(b.full, b.cur)
		b.cur = make([]byte, busHeaderLen, busHeaderLen+natsBatchMax)
	}
	if b.cfg.Framing == Raw {
		b.cur = binary.BigEndian.AppendUint32(b.cur, uint32(len(run)))
	}
	b.cur = append(b.cur, run...)
	b.pending += rec
	b.mu.Unlock()
	b.stats.published.Add(1)
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return nil
}

// take returns the batches filled so far, in order.
func (b *natsBus) take() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.full
	b.full = nil
	if len(b.cur) > busHeaderLen {
		out = append(out, b.cur)
		b.cur = make([]byte, busHeaderLen, min(max(2*cap(b.cur), 4096), busHeaderLen+natsBatchMax))
	}
	return out
}

// flush publishes the batches in order, each with the next origin sequence.
func (b *natsBus) flush(acks chan<- inflight) {
	defer b.done.Done()
	defer close(acks)
	select {
	case <-b.ready:
	case <-b.stop:
		return
	}
	var seq uint64
	for {
		stopping := false
		select {
		case <-b.kick:
		case <-b.stop:
			stopping = true
		}
		for _, batch := range b.take() {
			seq++
			putBusHeader(batch, busHeader{framing: b.cfg.Framing, origin: b.self, seq: seq, base: b.acked.Load() + 1})
			msg := nats.NewMsg(b.subject)
			msg.Data = batch
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%016x-%d", b.self, seq))
			paf := b.publish(msg, stopping)
			if paf == nil {
				return // closed
			}
			b.mu.Lock()
			b.pending -= len(batch) - busHeaderLen
			b.mu.Unlock()
			acks <- inflight{msg, seq, paf}
		}
		if stopping {
			return
		}
	}
}

// publish publishes msg, retrying until NATS takes it; nil if the bus
// closes first (or, stopping, after a second).
func (b *natsBus) publish(msg *nats.Msg, stopping bool) jetstream.PubAckFuture {
	deadline := time.Now().Add(time.Second)
	for {
		paf, err := b.js.PublishMsgAsync(msg)
		if err == nil {
			return paf
		}
		if stopping && time.Now().After(deadline) {
			return nil
		}
		select {
		case <-b.stop:
			if !stopping {
				return nil
			}
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// acks waits for the acknowledgements in order, republishing a batch whose
// ack failed until the stream takes it.
func (b *natsBus) acks(in <-chan inflight) {
	defer b.done.Done()
	for f := range in {
		for {
			select {
			case <-f.paf.Ok():
				b.stats.batches.Add(1)
				b.acked.Store(f.seq) // acks are awaited in order
			case err := <-f.paf.Err():
				b.log.Debug("bus: publish not acknowledged; republishing", "err", err.Error())
				select {
				case <-b.stop:
					b.stats.refused.Add(1)
					goto next
				case <-time.After(50 * time.Millisecond):
				}
				paf := b.publish(f.msg, false)
				if paf == nil {
					goto next
				}
				f.paf = paf
				continue
			}
			break
		}
	next:
	}
}

// Close publishes what Publish took, waiting a second at most, then
// disconnects.
func (b *natsBus) Close() error {
	b.closeMu.Do(func() {
		close(b.stop)
		b.cancel()
		if b.nc == nil {
			return
		}
		waited := make(chan struct{})
		go func() { b.done.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(3 * time.Second):
		}
		select {
		case <-b.js.PublishAsyncComplete():
		case <-time.After(time.Second):
		}
		b.mu.Lock()
		cctx := b.cctx
		b.mu.Unlock()
		if cctx != nil {
			cctx.Stop()
		}
		b.nc.Close()
		b.log.Info("bus closed", "published", b.stats.published.Load(), "delivered", b.stats.delivered.Load())
	})
	return nil
}
