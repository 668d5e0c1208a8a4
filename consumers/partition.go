package consumers

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/kafkaevent"
	"github.com/ember-run/ember/consumers/settings"
)

// record is a fetched message and when it was fetched.
type record struct {
	msg     kafka.Message
	fetched time.Time
	size    int // bytes held against the partition's budget
}

// partition consumes one assigned partition for one generation: a reader
// of its own (so a partition that waits never holds back another), a
// tracker of finished offsets, and lanes of workers that invoke batches in
// the binding's ordering mode.
type partition struct {
	g       *generation
	c       *consumer
	id      int
	reader  *kafka.Reader
	tracker *tracker
	budget  *budget
	// lanes carry records to workers: one lane and one worker (partition
	// ordering), one lane per key hash with one worker each (key), or one
	// lane with MaxConcurrency workers (none).
	lanes          []chan *record
	workersPerLane int

	// next is the offset expected next; -1 before the first record of a
	// partition that starts at its beginning.
	next int64
	// logStart and logStartAt cache the partition's first offset, asked
	// when a gap shows in the offsets.
	logStart   int64
	logStartAt time.Time
}

// fetchMaxBytes bounds one fetch of a partition.
const fetchMaxBytes = 1 << 20

// partitionBudget bounds the bytes of fetched, unfinished records of one
// partition (one record is always let in, however large).
const partitionBudget = 32 << 20

func newPartition(g *generation, id int, start int64) *partition {
	c := g.c
	b := c.b
	p := &partition{g: g, c: c, id: id, next: start, tracker: newTracker(start)}
	if start < 0 {
		p.next = -1
	}
	lanes, workers := 1, 1
	switch b.Ordering {
	case settings.OrderKey:
		lanes = b.MaxConcurrency
	case settings.OrderNone:
		workers = b.MaxConcurrency
	}
	p.workersPerLane = workers
	p.lanes = make([]chan *record, lanes)
	laneCap := min(max(2*b.BatchSize*workers, 256), 20000)
	for i := range p.lanes {
		p.lanes[i] = make(chan *record, laneCap)
	}
	p.budget = newBudget(min(partitionBudget, max(8<<20, 2*b.MaxBatchBytes*lanes*workers)))
	isolation := kafka.ReadUncommitted
	if b.IsolationLevel == settings.ReadCommitted {
		isolation = kafka.ReadCommitted
	}
	errLog := c.log.With().Int("partition", id).Str("client", "kafka-go").Logger()
	p.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:   c.m.brokers,
		Topic:     b.Topic,
		Partition: id,
		Dialer:    c.m.conn.Dialer(),
		MinBytes:  1,
		// A fetch is answered within MaxWait, which a large response can
		// miss; a record larger than this still comes (alone).
		MaxBytes:       fetchMaxBytes,
		MaxWait:        c.m.cfg.maxWait,
		QueueCapacity:  100,
		IsolationLevel: isolation,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			errLog.Debug().Msgf(msg, args...)
		}),
	})
	_ = p.reader.SetOffset(start) // kafka.FirstOffset when nothing was committed
	return p
}

// run consumes the partition until the generation is revoked and every
// worker has returned.
func (p *partition) run() {
	var wg sync.WaitGroup
	n := 0
	for _, lane := range p.lanes {
		for range p.workersPerLane {
			// A worker's invocations follow one another: the scheduler may
			// keep their instance between them (invoke.Invocation.HoldKey).
			hold := p.c.b.Tenant + "/" + p.c.b.ID + "/" + strconv.Itoa(p.id) + "/" + strconv.Itoa(n)
			n++
			wg.Add(1)
			go func() { defer wg.Done(); p.work(lane, hold) }()
		}
	}
	p.fetch()
	wg.Wait()
}

func (p *partition) close() {
	if err := p.reader.Close(); err != nil {
		p.c.log.Debug().Err(err).Int("partition", p.id).Msg("close reader")
	}
}

// fetch reads records into the lanes until the generation is revoked.
// Only this partition waits when its lanes or budget are full.
func (p *partition) fetch() {
	c := p.c
	soft := p.g.soft
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		msg, err := p.reader.FetchMessage(soft)
		if err != nil {
			if soft.Err() != nil {
				return
			}
			c.log.Warn().Err(err).Int("partition", p.id).Msg("fetch")
			if !sleepCtx(soft, bo.next()) {
				return
			}
			continue
		}
		bo.reset()
		now := time.Now()
		p.checkGap(msg.Offset)
		p.next = msg.Offset + 1
		p.tracker.fetch(msg.Offset, msg.Time)
		c.stats.recordsIn.Add(1)
		if c.metrics != nil {
			c.metrics.records.Inc()
			if !msg.Time.IsZero() {
				c.metrics.eventToFetch.Observe(now.Sub(msg.Time).Seconds())
			}
		}
		if !c.match(&msg) {
			c.stats.filtered.Add(1)
			if c.metrics != nil {
				c.metrics.filtered.Inc()
			}
			p.tracker.done(msg.Offset)
			continue
		}
		rec := &record{msg: msg, fetched: now, size: len(msg.Key) + len(msg.Value) + 64}
		if !p.budget.acquire(soft, rec.size) {
			return
		}
		c.stats.inFlight.Add(1)
		select {
		case p.lane(&msg) <- rec:
		case <-soft.Done():
			return
		}
	}
}

// lane returns the lane of msg.
func (p *partition) lane(msg *kafka.Message) chan *record {
	if len(p.lanes) == 1 {
		return p.lanes[0]
	}
	h := fnv.New32a()
	_, _ = h.Write(msg.Key)
	return p.lanes[h.Sum32()%uint32(len(p.lanes))]
}

// finish marks recs done: their offsets may be committed.
func (p *partition) finish(recs []*record) {
	n := 0
	for _, r := range recs {
		p.tracker.done(r.msg.Offset)
		n += r.size
	}
	p.budget.release(n)
	p.c.stats.inFlight.Add(-int64(len(recs)))
}

// checkGap counts records that retention removed before they were read:
// kafka-go moves a reader that is behind the log start to the start
// without a word. Other gaps are normal (compaction, transaction markers,
// aborted transactions under read_committed). The log start is asked at
// most once a second; in between the cached one (a lower bound) is used.
func (p *partition) checkGap(off int64) {
	if p.next < 0 || off <= p.next {
		return
	}
	if time.Since(p.logStartAt) > time.Second {
		ctx, cancel := context.WithTimeout(p.g.soft, 5*time.Second)
		first, err := listOffsets(ctx, p.g.client, p.c.b.Topic, []int{p.id}, kafka.FirstOffsetOf, true)
		cancel()
		if err != nil {
			p.c.log.Warn().Err(err).Int("partition", p.id).Msg("a gap in the offsets: could not read the log start to tell whether records expired")
			return
		}
		p.logStart, p.logStartAt = first[p.id], time.Now()
	}
	if p.logStart <= p.next {
		return
	}
	lost := min(p.logStart, off) - p.next
	p.c.stats.expired.Add(lost)
	if p.c.metrics != nil {
		p.c.metrics.expired.Add(float64(lost))
	}
	p.c.log.Error().Int("partition", p.id).Int64("from", p.next).Int64("to", p.next+lost).Int64("records", lost).
		Msg("records expired (retention) before they were processed: the binding fell behind by more than the topic's retention")
}

// match reports whether msg passes the binding's filters (any of them);
// true when there are none.
func (c *consumer) match(msg *kafka.Message) bool {
	if len(c.filters) == 0 {
		return true
	}
	ev := filterEvent(msg)
	for _, f := range c.filters {
		if f.Match(ev) {
			return true
		}
	}
	return false
}

// filterEvent is what filter patterns see of a record: "value" (as JSON,
// or a string when it is not JSON), "key" and "headers" (name to value)
// as strings, "topic", "partition", "offset".
func filterEvent(msg *kafka.Message) map[string]any {
	var value any
	dec := json.NewDecoder(bytes.NewReader(msg.Value))
	dec.UseNumber()
	if err := dec.Decode(&value); err != nil || dec.More() {
		value = string(msg.Value)
	}
	headers := make(map[string]any, len(msg.Headers))
	for _, h := range msg.Headers {
		headers[h.Key] = string(h.Value)
	}
	ev := map[string]any{
		"value":     value,
		"headers":   headers,
		"topic":     msg.Topic,
		"partition": json.Number(itoa(int64(msg.Partition))),
		"offset":    json.Number(itoa(msg.Offset)),
	}
	if msg.Key != nil {
		ev["key"] = string(msg.Key)
	}
	return ev
}

// work invokes the batches of one lane until the generation is revoked;
// hold is its invocations' HoldKey.
func (p *partition) work(lane chan *record, hold string) {
	soft := p.g.soft
	builder := kafkaevent.NewBuilder(p.c.bootstrap, p.c.b.MaxBatchBytes)
	var carry *record
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-lane:
			case <-soft.Done():
				return
			}
		}
		if soft.Err() != nil {
			return // revoked: nothing new starts
		}
		builder.Reset(p.c.b.Topic, p.id)
		if !builder.Add(&first.msg) {
			if !p.deadLetterOversized(first) {
				return
			}
			continue
		}
		batch := []*record{first}
		batch, carry = p.fill(lane, batch, builder)
		if !p.handle(batch, builder.Finish(), hold) {
			return
		}
	}
}

// fill adds records from lane to batch up to BatchSize and MaxBatchBytes,
// waiting up to BatchWindow for more when it is set. It returns the batch
// and a record that did not fit, to start the next one.
func (p *partition) fill(lane chan *record, batch []*record, b *kafkaevent.Builder) ([]*record, *record) {
	var window <-chan time.Time
	if p.c.b.BatchWindow > 0 {
		t := time.NewTimer(p.c.b.BatchWindow)
		defer t.Stop()
		window = t.C
	}
	for len(batch) < p.c.b.BatchSize {
		var rec *record
		select {
		case rec = <-lane:
		default:
			if window == nil {
				return batch, nil
			}
			select {
			case rec = <-lane:
			case <-window:
				return batch, nil
			case <-p.g.soft.Done():
				return batch, nil
			}
		}
		if !b.Add(&rec.msg) {
			return batch, rec
		}
		batch = append(batch, rec)
	}
	return batch, nil
}

// budget bounds the bytes a partition holds; one goroutine acquires.
type budget struct {
	mu    sync.Mutex
	used  int
	max   int
	freed chan struct{}
}

func newBudget(max int) *budget { return &budget{max: max, freed: make(chan struct{}, 1)} }

// acquire waits until n bytes fit (or nothing is held) and takes them;
// false if ctx ends first.
func (b *budget) acquire(ctx context.Context, n int) bool {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		select {
		case <-b.freed:
		case <-ctx.Done():
			return false
		}
	}
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// sleepCtx waits d and reports true, or false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
