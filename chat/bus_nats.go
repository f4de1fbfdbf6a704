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

// A natsBus is the Bus of cluster mode: a JetStream stream (file storage
// by default, bounded by age and size) on the subject cport.<cluster>.relay,
// written by every server and read by each through its own ordered
// consumer.
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
//
// A watch goroutine (setup, then watch) looks at the stream every second:
// one that is gone (a NATS restart loses a memory stream) is created
// again, and one created again, by this server or another, is read anew
// from its start (receiver.newStream). It logs when the relay stops
// working (NATS unreachable, the stream missing, publications not
// acknowledged) and when it works again, with what was published again.
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
	fails atomic.Int64  // publications not acknowledged, for watch; written by acks
	// unstored counts the batches whose publication failed and that are
	// not stored yet (republished, awaiting their ack): the relay is not
	// back until it is zero. Written by acks, read by watch.
	unstored atomic.Int64
	stored   chan struct{} // acks to watch: unstored went back to zero, look now
	// failErr is the last reason of fails (a string), for watch.
	failErr atomic.Value

	// created is when the stream read was created, and epoch its
	// receiver epoch; owned by the watch goroutine.
	created time.Time
	epoch   uint64

	ready   chan struct{} // closed when the stream exists
	stop    chan struct{}
	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	cctx    jetstream.ConsumeContext // guarded by mu
	done    sync.WaitGroup
	closeMu sync.Once
	until   time.Time // set by Close before stop closes: how long flush may still publish

	// down says why the relay is down, as watch last saw it (a string);
	// "" while it is up. For Ready.
	down atomic.Value
}

type inflight struct {
	msg    *nats.Msg
	seq    uint64 // the batch's origin sequence
	paf    jetstream.PubAckFuture
	failed bool // a publication of it failed: counted in unstored until acknowledged
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
		stored:  make(chan struct{}, 1),
		ready:   make(chan struct{}),
		stop:    make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.down.Store("the stream is not set up yet")
	b.cur = make([]byte, busHeaderLen, busHeaderLen+4096)
	return b, nil
}

func (b *natsBus) Stats() BusStats { return b.stats.snapshot() }

// Ready reports whether the relay is up: connected to NATS, the stream
// set up, and the last publications stored (as watch last saw them). Call
// it only after Start has returned.
func (b *natsBus) Ready() error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", b.nc.Status())
	}
	if why := b.down.Load().(string); why != "" {
		return errors.New(why)
	}
	return nil
}

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
	go b.watch()
	go b.flush(acks)
	go b.acks(acks)
	return nil
}

// watch creates the stream and starts the consumer, retrying while NATS
// is unreachable (the server serves its local clients meanwhile), then
// looks after them every second until Close.
func (b *natsBus) watch() {
	defer b.done.Done()
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		err := b.ensure(ctx)
		cancel()
		if err == nil {
			close(b.ready)
			b.down.Store("")
			break
		}
		if b.ctx.Err() != nil {
			return // closed
		}
		b.down.Store("the stream is not set up yet: " + err.Error())
		if try%10 == 0 {
			b.log.Warn("bus: cannot set up the stream yet; retrying", "stream", b.stream, "err", err.Error())
		}
		select {
		case <-b.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	b.log.Info("bus: relaying", "stream", b.stream, "subject", b.subject, "storage", b.storage(),
		"origin", fmt.Sprintf("%016x", b.self))
	var h relayHealth
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-tick.C:
			b.recv.tick(now)
			if !b.look(&h, now) {
				return
			}
			h.report(b, now)
		case <-b.stored:
			// The batches published again are stored: a relay down is
			// back now, not at the next tick.
			if !h.down.IsZero() && !b.look(&h, time.Now()) {
				return
			}
		}
	}
}

// look checks the stream and observes the relay's health; false if the bus
// closed meanwhile. Called by watch only. While the relay is down, a check
// gives up after a second: the next look, or the batches stored, should
// not wait behind a request to a cluster that has no leader yet.
func (b *natsBus) look(h *relayHealth, now time.Time) bool {
	timeout := 2 * time.Second
	if !h.down.IsZero() {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	err := b.ensure(ctx)
	cancel()
	if b.ctx.Err() != nil {
		return false
	}
	h.observe(b, now, err)
	return true
}

// storage returns the stream's storage type as Config.NATSStorage names it.
func (b *natsBus) storage() string {
	if b.cfg.NATSStorage == "memory" {
		return "memory"
	}
	return "file"
}

// ensure checks the stream, creates it if it is missing, and starts
// reading it from its start if it is not the one being read. Called by
// watch only.
func (b *natsBus) ensure(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", b.nc.Status())
	}
	st, err := b.js.Stream(ctx, b.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = b.createStream(ctx)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", b.stream, err)
	}
	info := st.CachedInfo()
	if info.Created.Equal(b.created) {
		return nil
	}
	policy := jetstream.DeliverNewPolicy // the first: what came before was not for this server
	if !b.created.IsZero() {
		policy = jetstream.DeliverAllPolicy // a new stream: everything in it came after the old one
		b.log.Warn("bus: the stream was created again: what the old one held and this server had not read is lost",
			"stream", b.stream, "created", info.Created)
	}
	return b.consume(ctx, st, info.Created, policy)
}

// createStream creates the stream (or updates it to the server's
// configuration, if another server created it meanwhile).
func (b *natsBus) createStream(ctx context.Context) (jetstream.Stream, error) {
	storage := jetstream.FileStorage
	if b.storage() == "memory" {
		storage = jetstream.MemoryStorage
	}
	return b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       b.stream,
		Subjects:   []string{b.subject},
		Storage:    storage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     b.cfg.NATSMaxAge,
		MaxBytes:   b.cfg.NATSMaxBytes,
		Replicas:   b.cfg.NATSReplicas,
		Duplicates: min(b.cfg.NATSMaxAge, 2*time.Minute),
		MaxMsgSize: int32(min(natsBatchMax+busHeaderLen+64, 1<<30)),
	})
}

// consume reads st, created at created, with a new ordered consumer from
// policy on, in place of the one reading the stream before, if any.
func (b *natsBus) consume(ctx context.Context, st jetstream.Stream, created time.Time, policy jetstream.DeliverPolicy) error {
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.subject},
		DeliverPolicy:  policy,
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	old := b.cctx
	b.cctx = nil
	b.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	epoch := b.epoch
	if !b.created.IsZero() {
		epoch = b.recv.newStream()
	}
	cctx, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			b.stats.dropped.Add(1)
			return
		}
		b.stats.pending.Store(int64(md.NumPending))
		b.stats.lag.Store(int64(time.Since(md.Timestamp)))
		b.recv.handle(epoch, md.Sequence.Stream, m.Data())
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
	b.created, b.epoch = created, epoch
	return nil
}

// relayHealthEvery is how often a relay still down is logged again;
// busStatsEvery, how often the bus's counters are, when they changed.
const (
	relayHealthEvery = 10 * time.Second
	busStatsEvery    = time.Minute
)

// relayHealth is watch's view of the relay: down since when, and what
// the counters were then.
type relayHealth struct {
	down     time.Time // zero: working
	logged   time.Time // when "relay down" was last logged
	fails    int64     // b.fails at the last look
	replayed int64     // replayed when it went down
	lost     int64     // lost when it went down
	stats    BusStats  // the counters last reported
	reported time.Time // when
}

// report logs the bus's counters every busStatsEvery, if they changed.
func (h *relayHealth) report(b *natsBus, now time.Time) {
	if h.reported.IsZero() {
		h.reported = now
	}
	st := b.stats.snapshot()
	if now.Sub(h.reported) < busStatsEvery || st == h.stats {
		return
	}
	h.stats, h.reported = st, now
	relay := "up"
	if !h.down.IsZero() {
		relay = "down"
	}
	b.log.Info("bus: stats", "relay", relay,
		"published", st.Published, "batches", st.Batches, "received", st.Received, "delivered", st.Delivered,
		"missed", st.Missed, "lost_messages", st.Lost, "replayed", st.Replayed, "refused", st.Refused,
		"reconnects", st.Reconnect)
}

// observe takes one look's result: err from ensure, or publications not
// acknowledged since the last look; logs a change, and a relay still down
// every relayHealthEvery. A relay that was down is back only once every
// batch whose publication failed is stored: until then the other servers
// miss those batches, and a "resumed" followed by more failures of the same
// batches would make the relay flap in the log.
func (h *relayHealth) observe(b *natsBus, now time.Time, err error) {
	fails, unstored := b.fails.Load(), b.unstored.Load()
	if err == nil {
		reason, _ := b.failErr.Load().(string)
		switch {
		case h.down.IsZero() && fails > h.fails:
			err = fmt.Errorf("%d publications not acknowledged: %s", fails-h.fails, reason)
		case !h.down.IsZero() && unstored > 0:
			err = fmt.Errorf("%d batches not stored yet: %s", unstored, reason)
		}
	}
	h.fails = fails
	st := b.stats.snapshot()
	switch {
	case err != nil && h.down.IsZero():
		b.down.Store(err.Error())
		h.down, h.logged = now, now
		h.replayed, h.lost = st.Replayed, st.Lost
		b.log.Warn("bus: relay down", "err", err.Error())
	case err != nil:
		b.down.Store(err.Error())
		if now.Sub(h.logged) >= relayHealthEvery {
			h.logged = now
			b.log.Warn("bus: relay still down", "down", now.Sub(h.down).Round(time.Millisecond).String(), "err", err.Error())
		}
	case !h.down.IsZero():
		b.log.Info("bus: relay resumed", "down", now.Sub(h.down).Round(time.Millisecond).String(),
			"replayed", st.Replayed-h.replayed, "lost_messages", st.Lost-h.lost)
		h.down = time.Time{}
		b.down.Store("")
	}
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
	var seq, count uint64 // the last batch's origin sequence; the chat messages before the next
	for {
		stopping := false
		select {
		case <-b.kick:
		case <-b.stop:
			stopping = true
		}
		for _, batch := range b.take() {
			seq++
			putBusHeader(batch, busHeader{framing: b.cfg.Framing, origin: b.self, seq: seq, base: b.acked.Load() + 1, count: count})
			count += uint64(countMsgs(b.cfg.Framing, batch[busHeaderLen:]))
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
			acks <- inflight{msg: msg, seq: seq, paf: paf}
		}
		if stopping {
			b.bye(acks, seq+1, count)
			return
		}
	}
}

// bye publishes the server's last batch, an empty one (seq, after the
// others): the other servers forget it. Called by flush, stopping.
func (b *natsBus) bye(acks chan<- inflight, seq, count uint64) {
	batch := make([]byte, busHeaderLen)
	putBusHeader(batch, busHeader{framing: b.cfg.Framing, origin: b.self, seq: seq, base: b.acked.Load() + 1, count: count})
	msg := nats.NewMsg(b.subject)
	msg.Data = batch
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%016x-%d", b.self, seq))
	if paf := b.publish(msg, true); paf != nil {
		acks <- inflight{msg: msg, seq: seq, paf: paf}
	}
}

// publish publishes msg, retrying until NATS takes it; nil if the bus
// closes first (or, stopping, once Close's deadline has passed).
func (b *natsBus) publish(msg *nats.Msg, stopping bool) jetstream.PubAckFuture {
	for {
		paf, err := b.js.PublishMsgAsync(msg)
		if err == nil {
			return paf
		}
		if stopping && !time.Now().Before(b.until) {
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

// The wait before a batch whose ack failed is published again: retryMin,
// doubled at each failure in a row, up to retryMax. A stream without a
// leader answers at once that nobody listens (nats.go tries twice more,
// 250 ms apart, before it fails the publication): retryMax bounds how long
// after a new leader's election the batches are stored.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 250 * time.Millisecond
)

// acks waits for the acknowledgements in order, republishing a batch whose
// ack failed until the stream takes it. When the oldest fails, every other
// one whose ack failed is published again at once, not one after the
// other: after a NATS fault (a stream leader lost: seconds without one)
// hundreds may have failed.
func (b *natsBus) acks(in <-chan inflight) {
	defer b.done.Done()
	var window []inflight // published, awaiting their ack, oldest first
	backoff := retryMin   // before the next try of the oldest: doubles while it fails
	for in != nil || len(window) > 0 {
		if len(window) == 0 {
			f, ok := <-in
			if !ok {
				return
			}
			window = append(window, f)
		}
		head := &window[0]
		select {
		case f, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			window = append(window, f)
		case <-head.paf.Ok():
			backoff = retryMin
			if len(head.msg.Data) > busHeaderLen { // not the last, empty one
				b.stats.batches.Add(1)
			}
			settled := head.failed && b.unstored.Add(-1) == 0
			b.acked.Store(head.seq) // acks are awaited in order
			window[0] = inflight{}
			window = window[1:]
			if settled {
				// The last batch known to have failed is stored; the others
				// may have failed since, unseen: look before saying so.
				if !b.retryFailed(window) {
					b.abandon(window)
					window = nil
					continue
				}
				if b.unstored.Load() == 0 {
					select {
					case b.stored <- struct{}{}:
					default:
					}
				}
			}
		case err := <-head.paf.Err():
			b.failed(head, err)
			select {
			case <-b.stop:
				b.abandon(window[:1]) // closing: no more tries
				window[0] = inflight{}
				window = window[1:]
				continue
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, retryMax)
			if !b.retry(head) || !b.retryFailed(window[1:]) {
				b.abandon(window)
				window = nil
			}
		}
	}
}

// retryFailed publishes again, at once, every batch of window whose
// publication failed; false if the bus closes first.
func (b *natsBus) retryFailed(window []inflight) bool {
	for k := range window {
		select {
		case err := <-window[k].paf.Err():
			b.failed(&window[k], err)
			if !b.retry(&window[k]) {
				return false
			}
		default:
		}
	}
	return true
}

// failed counts a publication of f not acknowledged, for watch.
func (b *natsBus) failed(f *inflight, err error) {
	b.log.Debug("bus: publish not acknowledged; republishing", "err", err.Error())
	b.failErr.Store(err.Error())
	b.fails.Add(1)
	if !f.failed {
		f.failed = true
		b.unstored.Add(1)
	}
}

// abandon counts the batches of fs as refused: the bus is closing.
func (b *natsBus) abandon(fs []inflight) {
	b.stats.refused.Add(int64(len(fs)))
	for _, f := range fs {
		if f.failed {
			b.unstored.Add(-1)
		}
	}
}

// retry publishes f again; false if the bus closes first.
func (b *natsBus) retry(f *inflight) bool {
	paf := b.publish(f.msg, false)
	if paf == nil {
		return false
	}
	b.stats.replayed.Add(1)
	f.paf = paf
	return true
}

// Close publishes what Publish took, until ctx is done, then
// disconnects; what is left is counted as refused.
func (b *natsBus) Close(ctx context.Context) error {
	b.closeMu.Do(func() {
		b.until = time.Now().Add(time.Second)
		if d, ok := ctx.Deadline(); ok {
			b.until = d
		}
		close(b.stop)
		b.cancel()
		if b.nc == nil {
			return
		}
		waited := make(chan struct{})
		go func() { b.done.Wait(); close(waited) }()
		select {
		case <-waited:
			select {
			case <-b.js.PublishAsyncComplete():
			case <-ctx.Done():
			}
		case <-ctx.Done():
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
