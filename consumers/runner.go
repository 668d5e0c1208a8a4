package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/ember-run/ember/consumers/kafkaevent"
	"github.com/ember-run/ember/engine/invoke"
)

// Header names written on dead-letter and result records.
const (
	HeaderReason    = "ember.dlq.reason"
	HeaderErrorType = "ember.error.type"
	HeaderStatus    = "ember.status"
	HeaderAttempts  = "ember.attempts"
	HeaderBinding   = "ember.binding"
	HeaderTopic     = "ember.topic"
	HeaderPartition = "ember.partition"
	HeaderOffset    = "ember.offset"
	// HeaderLastOffset is on result records: the batch's last offset
	// (HeaderOffset is its first).
	HeaderLastOffset = "ember.last-offset"
	HeaderVersion    = "ember.version"
)

// ErrorTypePayloadTooLarge is the HeaderErrorType of a record dead-lettered
// because its event alone exceeds the binding's MaxPayloadBytes.
const ErrorTypePayloadTooLarge = "PayloadTooLarge"

// StatusNotInvoked is the HeaderStatus of a record that was never invoked.
const StatusNotInvoked = "not_invoked"

// record is a fetched message and when it was fetched.
type record struct {
	msg     kafka.Message
	fetched time.Time
}

// partition is the per-partition state, owned by its worker goroutine except
// for queue, which the fetch loop fills.
type partition struct {
	id    int
	queue chan record
	// lastDone is the highest offset this process finished; a redelivered
	// record at or below it is skipped.
	lastDone int64
	batch    []record
	builder  *kafkaevent.Builder
}

type counters struct {
	recordsIn, duplicates, invocations, functionErrors, platformErrors, dlq, inFlight, committed atomic.Int64
}

func (c *counters) snapshot() BindingStats {
	return BindingStats{
		RecordsIn: c.recordsIn.Load(), Duplicates: c.duplicates.Load(), Invocations: c.invocations.Load(),
		FunctionErrors: c.functionErrors.Load(), PlatformErrors: c.platformErrors.Load(),
		DLQRecords: c.dlq.Load(), InFlight: c.inFlight.Load(), Committed: c.committed.Load(),
	}
}

// runner consumes one binding.
type runner struct {
	m         *Manager
	b         Binding
	log       zerolog.Logger
	bootstrap string
	reader    *kafka.Reader
	writer    *kafka.Writer
	metrics   *bindingMetrics
	stats     counters

	stopCh     chan struct{} // closed when the binding starts stopping
	stopOnce   sync.Once
	fetchCtx   context.Context // cancelled when stopping: ends the fetch loop
	fetchStop  context.CancelFunc
	hardCtx    context.Context // cancelled after the drain timeout: ends invocations
	hardCancel context.CancelFunc
	drainTO    chan time.Duration
	done       chan struct{}

	commitMu sync.Mutex
	pending  map[int]kafka.Message // last finished message per partition, not yet committed
	highest  map[int]int64         // highest offset committed or pending per partition
}

func startRunner(parent context.Context, m *Manager, b Binding) *runner {
	r := &runner{
		m:         m,
		b:         b,
		log:       m.log.With().Str("binding", b.ID).Str("topic", b.Topic).Logger(),
		bootstrap: strings.Join(m.brokers, ","),
		stopCh:    make(chan struct{}),
		drainTO:   make(chan time.Duration, 1),
		done:      make(chan struct{}),
		pending:   make(map[int]kafka.Message),
		highest:   make(map[int]int64),
	}
	if m.metrics != nil {
		r.metrics = m.metrics.forBinding(b.ID)
	}
	base := context.WithoutCancel(parent)
	r.fetchCtx, r.fetchStop = context.WithCancel(base)
	r.hardCtx, r.hardCancel = context.WithCancel(base)
	// The reader is created in run, after the starting position is pinned:
	// kafka-go's group reader joins the group as soon as it exists.
	r.writer = &kafka.Writer{
		Addr:         kafka.TCP(m.brokers...),
		Transport:    m.transport,
		Balancer:     &kafka.Hash{},
		BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
		// Dead-lettered records are as large as the source topic allows.
		BatchBytes: 64 << 20,
	}
	go r.run()
	return r
}

// stop drains the binding: no new fetches, in-flight batches finish (up to
// drainTimeout), finished offsets are committed, clients are closed. It
// returns when all of that is done.
func (r *runner) stop(drainTimeout time.Duration) {
	r.stopOnce.Do(func() {
		r.drainTO <- drainTimeout
		close(r.stopCh)
		r.fetchStop()
	})
	<-r.done
}

func (r *runner) run() {
	defer close(r.done)
	defer r.hardCancel()
	r.ensureTopics()
	if !r.pinStart() {
		// Stopped before the position was pinned: nothing was fetched.
		if err := r.writer.Close(); err != nil {
			r.log.Warn().Err(err).Msg("close writer")
		}
		return
	}
	r.reader = r.newReader()

	var workers errgroup.Group
	commitDone := make(chan struct{})
	commitStop := make(chan struct{})
	go func() {
		defer close(commitDone)
		r.commitLoop(commitStop)
	}()

	// The fetch loop is the only caller of workers.Go, and it has returned
	// before workers.Wait is called.
	r.fetchLoop(&workers)

	drained := make(chan struct{})
	go func() {
		_ = workers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(<-r.drainTO):
		r.log.Warn().Msg("drain timeout: cancelling in-flight invocations")
		r.hardCancel()
		<-drained
	}
	close(commitStop)
	<-commitDone
	r.commit() // final flush of what the workers finished
	if err := r.reader.Close(); err != nil {
		r.log.Warn().Err(err).Msg("close reader")
	}
	if err := r.writer.Close(); err != nil {
		r.log.Warn().Err(err).Msg("close writer")
	}
}

// newReader returns the binding's group reader. StartOffset is always
// FirstOffset: a `latest` binding's partitions were pinned at their end by
// pinStart, and a partition that appears later (WatchPartitionChanges) or was
// never pinned is read from its beginning, never skipped. kafka-go re-applies
// StartOffset on every join to each partition without a committed offset, so
// any other value would skip records after a crash before the first commit.
func (r *runner) newReader() *kafka.Reader {
	errLog := r.log.With().Str("client", "kafka-go").Logger()
	m := r.m
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:           m.brokers,
		GroupID:           r.b.GroupID,
		Topic:             r.b.Topic,
		MinBytes:          1,
		MaxBytes:          max(10<<20, r.b.MaxPayloadBytes),
		MaxWait:           m.cfg.maxWait,
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    m.cfg.sessionTimeout,
		HeartbeatInterval: m.cfg.heartbeatInterval,
		RebalanceTimeout:  m.cfg.rebalanceTimeout,
		JoinGroupBackoff:  500 * time.Millisecond,
		// Commits are synchronous and issued by our own committer, batched
		// per CommitInterval and flushed on stop.
		CommitInterval:        0,
		QueueCapacity:         1000,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			errLog.Warn().Msgf(msg, args...)
		}),
	})
}

// pinStart fixes a `latest` binding's starting position before its reader
// joins the group, the way Lambda fixes an event source mapping's position
// when it is created: every partition of the topic on which the group never
// committed gets its current end offset committed. It retries with backoff
// until it succeeds (true) or the binding stops (false); it never falls back
// to starting at the end of the log, which would skip records produced
// before the first commit of a restarted process.
func (r *runner) pinStart() bool {
	if r.b.StartingPosition != StartLatest {
		return true // earliest: partitions without a commit start at FirstOffset
	}
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		ctx, cancel := context.WithTimeout(r.fetchCtx, 10*time.Second)
		err := r.pinLatest(ctx)
		cancel()
		if err == nil {
			return true
		}
		if r.fetchCtx.Err() != nil {
			return false
		}
		r.log.Warn().Err(err).Msg("pin starting position failed, retrying")
		if !r.sleep(bo.next()) {
			return false
		}
	}
}

// pinLatest commits the end offset of each partition of the topic on which
// the group has no committed offset. A topic that does not exist yet has
// nothing to pin: its partitions are read from their beginning once created.
func (r *runner) pinLatest(ctx context.Context) error {
	// A transport of its own: a kafka-go Transport answers metadata from a
	// cache refreshed every 6s, which would report a new topic as unknown.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(r.m.brokers...), Transport: tr}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{r.b.Topic}})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(md.Topics) != 1 {
		return fmt.Errorf("metadata returned %d topics", len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			r.log.Info().Msg("topic does not exist yet: its partitions will be read from the beginning")
			return nil
		}
		return fmt.Errorf("metadata of topic %q: %w", r.b.Topic, err)
	}
	var ids []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		ids = append(ids, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	if len(ids) == 0 {
		return nil
	}
	// End offsets are read before the committed ones, so an end offset is
	// never newer than the observation that the partition had no commit.
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{r.b.Topic: reqs}})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	end := make(map[int]int64, len(ids))
	for _, po := range lo.Topics[r.b.Topic] {
		if po.Error != nil {
			return fmt.Errorf("end offset of partition %d: %w", po.Partition, po.Error)
		}
		end[po.Partition] = po.LastOffset
	}
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: r.b.GroupID, Topics: map[string][]int{r.b.Topic: ids}})
	if err != nil {
		return fmt.Errorf("offset fetch: %w", err)
	}
	committed := make(map[int]int64, len(ids))
	switch {
	case of.Error == nil:
		for _, p := range of.Topics[r.b.Topic] {
			if p.Error != nil {
				return fmt.Errorf("committed offset of partition %d: %w", p.Partition, p.Error)
			}
			committed[p.Partition] = p.CommittedOffset
		}
	case errors.Is(of.Error, kafka.GroupIdNotFound):
		// The group never committed anything.
	default:
		return fmt.Errorf("offset fetch for group %q: %w", r.b.GroupID, of.Error)
	}
	var pins []kafka.OffsetCommit
	for _, id := range ids {
		if c, ok := committed[id]; ok && c >= 0 {
			continue
		}
		e, ok := end[id]
		if !ok {
			return fmt.Errorf("no end offset for partition %d", id)
		}
		pins = append(pins, kafka.OffsetCommit{Partition: id, Offset: e})
	}
	if len(pins) == 0 {
		return nil
	}
	// Generation -1 and no member id: a commit for a group with no active
	// member. If the group is active, another replica already runs this
	// binding and pinned its partitions before it joined.
	resp, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: r.b.GroupID, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{r.b.Topic: pins},
	})
	if err != nil {
		return fmt.Errorf("commit starting offsets: %w", err)
	}
	active := 0
	for _, p := range resp.Topics[r.b.Topic] {
		switch {
		case p.Error == nil:
		case errors.Is(p.Error, kafka.UnknownMemberId), errors.Is(p.Error, kafka.IllegalGeneration),
			errors.Is(p.Error, kafka.RebalanceInProgress):
			active++
		default:
			return fmt.Errorf("commit starting offset of partition %d: %w", p.Partition, p.Error)
		}
	}
	if len(resp.Topics[r.b.Topic]) != len(pins) {
		return fmt.Errorf("commit of %d starting offsets answered for %d partitions", len(pins), len(resp.Topics[r.b.Topic]))
	}
	if active > 0 {
		r.log.Debug().Int("partitions", active).Msg("group is active: another replica pinned the starting position")
		return nil
	}
	r.log.Info().Int("partitions", len(pins)).Msg("pinned starting position at the end of the log")
	return nil
}

// ensureTopics creates the dead-letter and result topics if they are missing.
func (r *runner) ensureTopics() {
	ctx, cancel := context.WithTimeout(r.fetchCtx, 10*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(r.m.brokers...), Transport: r.m.transport}
	// A dead-letter topic must take any record its source topic took, or a
	// large record could never be dead-lettered and its partition would
	// stall: copy the source's max.message.bytes when it is set.
	var configs []kafka.ConfigEntry
	if v, ok := r.sourceMaxMessageBytes(ctx, cl); ok {
		configs = []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: v}}
	}
	topics := []kafka.TopicConfig{{Topic: r.b.DeadLetterTopic, NumPartitions: -1, ReplicationFactor: -1, ConfigEntries: configs}}
	if r.b.ResultTopic != "" {
		topics = append(topics, kafka.TopicConfig{Topic: r.b.ResultTopic, NumPartitions: -1, ReplicationFactor: -1, ConfigEntries: configs})
	}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		r.log.Warn().Err(err).Msg("create dead-letter/result topics")
		return
	}
	for t, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			r.log.Warn().Err(err).Str("target_topic", t).Msg("create topic")
		}
	}
}

// sourceMaxMessageBytes reads the source topic's max.message.bytes.
func (r *runner) sourceMaxMessageBytes(ctx context.Context, cl *kafka.Client) (string, bool) {
	resp, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: r.b.Topic, ConfigNames: []string{"max.message.bytes"},
	}}})
	if err != nil {
		r.log.Warn().Err(err).Msg("describe source topic config")
		return "", false
	}
	for _, res := range resp.Resources {
		for _, e := range res.ConfigEntries {
			if e.ConfigName == "max.message.bytes" && e.ConfigValue != "" {
				return e.ConfigValue, true
			}
		}
	}
	return "", false
}

func (r *runner) fetchLoop(workers *errgroup.Group) {
	parts := make(map[int]*partition)
	qcap := min(max(2*r.b.BatchSize, 256), 20000)
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		msg, err := r.reader.FetchMessage(r.fetchCtx)
		if err != nil {
			if r.fetchCtx.Err() != nil {
				return
			}
			r.log.Warn().Err(err).Msg("fetch")
			if !r.sleep(bo.next()) {
				return
			}
			continue
		}
		bo.reset()
		now := time.Now()
		r.stats.recordsIn.Add(1)
		r.stats.inFlight.Add(1)
		if r.metrics != nil {
			r.metrics.records.Inc()
		}
		p := parts[msg.Partition]
		if p == nil {
			p = &partition{
				id:       msg.Partition,
				queue:    make(chan record, qcap),
				lastDone: -1,
				builder:  kafkaevent.NewBuilder(r.bootstrap, r.b.MaxPayloadBytes),
			}
			parts[msg.Partition] = p
			workers.Go(func() error { r.partitionLoop(p); return nil })
		}
		select {
		case p.queue <- record{msg: msg, fetched: now}:
		case <-r.stopCh:
			return
		}
	}
}

// partitionLoop invokes one partition's batches in order until the binding stops.
func (r *runner) partitionLoop(p *partition) {
	var carry *record
	for {
		var first record
		if carry != nil {
			first, carry = *carry, nil
		} else {
			select {
			case <-r.stopCh:
				return
			case first = <-p.queue:
			}
		}
		if r.duplicate(p, &first) {
			continue
		}
		b := p.builder
		b.Reset(r.b.Topic, p.id)
		if !b.Add(&first.msg) {
			if !r.deadLetterOversized(p, first) {
				return
			}
			continue
		}
		batch := append(p.batch[:0], first)
		carry = r.fill(p, &batch)
		payload := b.Finish()
		if !r.handleBatch(p, batch, payload) {
			return
		}
		last := batch[len(batch)-1].msg
		p.lastDone = last.Offset
		r.stats.inFlight.Add(-int64(len(batch)))
		r.markDone(last)
		clear(batch) // drop references to record bytes
		p.batch = batch[:0]
	}
}

// fill adds queued records to batch up to BatchSize, waiting up to
// BatchWindow for more when it is set. It returns a record that did not fit
// in the payload limit, to start the next batch.
func (r *runner) fill(p *partition, batch *[]record) *record {
	var window <-chan time.Time
	if r.b.BatchWindow > 0 {
		t := time.NewTimer(r.b.BatchWindow)
		defer t.Stop()
		window = t.C
	}
	for len(*batch) < r.b.BatchSize {
		var rec record
		select {
		case rec = <-p.queue:
		default:
			if window == nil {
				return nil
			}
			select {
			case rec = <-p.queue:
			case <-window:
				return nil
			case <-r.stopCh:
				return nil
			}
		}
		if r.duplicate(p, &rec) {
			continue
		}
		if !p.builder.Add(&rec.msg) {
			return &rec
		}
		*batch = append(*batch, rec)
	}
	return nil
}

// duplicate reports (and counts) a record this process already finished.
func (r *runner) duplicate(p *partition, rec *record) bool {
	if rec.msg.Offset > p.lastDone {
		return false
	}
	r.stats.duplicates.Add(1)
	r.stats.inFlight.Add(-1)
	return true
}

// handleBatch invokes batch until it succeeds or is dead-lettered and reports
// true; false means the binding stopped first and the batch is unfinished.
func (r *runner) handleBatch(p *partition, batch []record, payload []byte) bool {
	if r.metrics != nil {
		r.metrics.batchSize.Observe(float64(len(batch)))
	}
	platform := backoff{min: r.b.Retry.MinBackoff, max: r.b.Retry.MaxBackoff}
	fn := backoff{min: r.b.Retry.MinBackoff, max: r.b.Retry.MaxBackoff}
	attempt := 1
	for {
		inv := &invoke.Invocation{
			ID:           invoke.NewID(),
			Tenant:       r.b.Tenant,
			Function:     r.b.Function,
			Qualifier:    r.b.Qualifier,
			Payload:      payload,
			Source:       r.b.ID,
			FirstEventAt: batch[0].fetched,
		}
		start := time.Now()
		if r.metrics != nil {
			r.metrics.fetchToInvoke.Observe(start.Sub(batch[0].fetched).Seconds())
		}
		res, err := r.m.invoker.Invoke(r.hardCtx, inv)
		r.stats.invocations.Add(1)
		if o := r.m.cfg.observer; o != nil {
			o.InvocationDone(InvocationReport{
				Binding: r.b.ID, Topic: r.b.Topic, Partition: p.id, Records: len(batch), Attempt: attempt,
				Result: res, Err: err, FirstEventTime: batch[0].msg.Time, FirstFetched: batch[0].fetched,
				InvokeStart: start, Done: time.Now(),
			})
		}
		if err != nil {
			r.stats.platformErrors.Add(1)
			if r.metrics != nil {
				r.metrics.invocation("platform_error")
			}
			if r.hardCtx.Err() != nil {
				return false
			}
			r.log.Warn().Err(err).Int("partition", p.id).Int64("first_offset", batch[0].msg.Offset).
				Msg("platform failure, retrying")
			if !r.sleep(platform.next()) {
				return false
			}
			continue
		}
		if r.metrics != nil {
			r.metrics.invocation(res.Status.String())
		}
		if res.OK() {
			if r.b.ResultTopic == "" {
				return true
			}
			return r.produce(r.resultMessage(p, batch, inv.ID, res))
		}
		r.stats.functionErrors.Add(1)
		if attempt >= r.b.Retry.MaxAttempts {
			reason := fmt.Sprintf("function failed %d of %d attempts: %s", attempt, r.b.Retry.MaxAttempts, res.Status)
			r.log.Warn().Int("partition", p.id).Int64("first_offset", batch[0].msg.Offset).Int("records", len(batch)).
				Str("status", res.Status.String()).Str("error_type", res.ErrorType).Msg("dead-lettering batch")
			return r.deadLetter(batch, reason, res.ErrorType, res.Status.String(), attempt)
		}
		r.log.Debug().Int("partition", p.id).Int("attempt", attempt).Str("status", res.Status.String()).
			Msg("function failure, retrying")
		if !r.sleep(fn.next()) {
			return false
		}
		attempt++
	}
}

func (r *runner) deadLetterOversized(p *partition, rec record) bool {
	size := kafkaevent.EventSize(r.bootstrap, &rec.msg)
	reason := fmt.Sprintf("record event is %d bytes, over the binding's max payload of %d bytes", size, r.b.MaxPayloadBytes)
	r.log.Warn().Int("partition", p.id).Int64("offset", rec.msg.Offset).Int("event_bytes", size).
		Msg("record too large, dead-lettering without invoking")
	if !r.deadLetter([]record{rec}, reason, ErrorTypePayloadTooLarge, StatusNotInvoked, 0) {
		return false
	}
	p.lastDone = rec.msg.Offset
	r.stats.inFlight.Add(-1)
	r.markDone(rec.msg)
	return true
}

// deadLetter writes batch to the dead-letter topic (retrying until the binding
// stops) and reports whether it was written.
func (r *runner) deadLetter(batch []record, reason, errType, status string, attempts int) bool {
	msgs := make([]kafka.Message, len(batch))
	for i, rec := range batch {
		m := rec.msg
		h := make([]kafka.Header, 0, len(m.Headers)+8)
		h = append(h, m.Headers...)
		h = append(h,
			kafka.Header{Key: HeaderReason, Value: []byte(reason)},
			kafka.Header{Key: HeaderErrorType, Value: []byte(errType)},
			kafka.Header{Key: HeaderStatus, Value: []byte(status)},
			kafka.Header{Key: HeaderAttempts, Value: strconv.AppendInt(nil, int64(attempts), 10)},
			kafka.Header{Key: HeaderBinding, Value: []byte(r.b.ID)},
			kafka.Header{Key: HeaderTopic, Value: []byte(m.Topic)},
			kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
			kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, m.Offset, 10)},
		)
		msgs[i] = kafka.Message{Topic: r.b.DeadLetterTopic, Key: m.Key, Value: m.Value, Headers: h, Time: m.Time}
	}
	if !r.produce(msgs...) {
		return false
	}
	r.stats.dlq.Add(int64(len(batch)))
	if r.metrics != nil {
		r.metrics.dlq.Add(float64(len(batch)))
	}
	return true
}

func (r *runner) resultMessage(p *partition, batch []record, invID string, res invoke.Result) kafka.Message {
	return kafka.Message{
		Topic: r.b.ResultTopic,
		Key:   []byte(invID),
		Value: res.Payload,
		Headers: []kafka.Header{
			{Key: HeaderBinding, Value: []byte(r.b.ID)},
			{Key: HeaderStatus, Value: []byte(res.Status.String())},
			{Key: HeaderVersion, Value: []byte(res.Version)},
			{Key: HeaderTopic, Value: []byte(r.b.Topic)},
			{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(p.id), 10)},
			{Key: HeaderOffset, Value: strconv.AppendInt(nil, batch[0].msg.Offset, 10)},
			{Key: HeaderLastOffset, Value: strconv.AppendInt(nil, batch[len(batch)-1].msg.Offset, 10)},
		},
	}
}

// produce writes msgs, retrying with backoff until it succeeds (true) or the
// binding stops (false). A failed write is a platform failure.
func (r *runner) produce(msgs ...kafka.Message) bool {
	bo := backoff{min: r.b.Retry.MinBackoff, max: r.b.Retry.MaxBackoff}
	for {
		err := r.writer.WriteMessages(r.hardCtx, msgs...)
		if err == nil {
			return true
		}
		if r.hardCtx.Err() != nil {
			return false
		}
		r.stats.platformErrors.Add(1)
		r.log.Warn().Err(err).Str("target_topic", msgs[0].Topic).Msg("produce failed, retrying")
		if !r.sleep(bo.next()) {
			return false
		}
	}
}

// sleep waits d and reports true, or false when the binding stops first.
func (r *runner) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stopCh:
		return false
	case <-r.hardCtx.Done():
		return false
	}
}

// markDone records that every record of msg's partition up to msg is finished.
func (r *runner) markDone(msg kafka.Message) {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	if h, ok := r.highest[msg.Partition]; ok && msg.Offset <= h {
		return // never move a partition's commit backwards
	}
	r.highest[msg.Partition] = msg.Offset
	r.pending[msg.Partition] = msg
}

func (r *runner) commitLoop(stop <-chan struct{}) {
	t := time.NewTicker(r.m.cfg.commitInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.commit()
		}
	}
}

// commit commits the pending offsets synchronously; on failure they stay
// pending (unless superseded) for the next try.
func (r *runner) commit() {
	r.commitMu.Lock()
	if len(r.pending) == 0 {
		r.commitMu.Unlock()
		return
	}
	msgs := make([]kafka.Message, 0, len(r.pending))
	for _, m := range r.pending {
		msgs = append(msgs, kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
	}
	clear(r.pending)
	r.commitMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.reader.CommitMessages(ctx, msgs...); err != nil {
		r.log.Warn().Err(err).Int("partitions", len(msgs)).Msg("commit failed, will retry")
		r.commitMu.Lock()
		for _, m := range msgs {
			if _, newer := r.pending[m.Partition]; !newer {
				r.pending[m.Partition] = m
			}
		}
		r.commitMu.Unlock()
		return
	}
	r.stats.committed.Add(1)
}

// backoff doubles from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
