package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/kafkaevent"
)

// RedriveResult is what a Redrive did.
type RedriveResult struct {
	// Scanned counts dead-letter records read in the range; Redriven those
	// of the binding that the function then handled; DeadLettered those
	// that failed again and were dead-lettered anew (after the range, so a
	// later redrive can take them again).
	Scanned, Redriven, DeadLettered int64
}

// Redrive feeds b's dead-lettered records written in [from, to) back to
// b's function, each at least once, with b's batching and error controls:
// records are rebuilt as they were (topic, partition, offset, timestamp,
// key, value and their own headers) and batched per original partition in
// dead-letter order. It returns when every record was handled or
// dead-lettered again, or with an error when ctx ends first (records
// already handled stay handled; running it again redrives the rest, and
// may invoke some twice).
func (m *Manager) Redrive(ctx context.Context, b Binding, from, to time.Time) (RedriveResult, error) {
	if err := b.Validate(); err != nil {
		return RedriveResult{}, err
	}
	b = b.withDefaults()
	var res RedriveResult
	cl, done := m.adminClient()
	defer done()
	ids, err := partitionsOf(ctx, cl, b.DeadLetterTopic)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return res, nil // nothing was ever dead-lettered
	}
	if err != nil {
		return res, fmt.Errorf("redrive %s: %w", b.ID, err)
	}
	start, err := offsetsAt(ctx, cl, b.DeadLetterTopic, ids, from)
	if err != nil {
		return res, fmt.Errorf("redrive %s: %w", b.ID, err)
	}
	end, err := offsetsAt(ctx, cl, b.DeadLetterTopic, ids, to)
	if err != nil {
		return res, fmt.Errorf("redrive %s: %w", b.ID, err)
	}

	rc := &consumer{m: m, b: b, log: m.log.With().Str("binding", b.ID).Str("redrive", b.DeadLetterTopic).Logger(),
		bootstrap: strings.Join(m.brokers, ","), stopCh: make(chan struct{}), done: make(chan struct{})}
	rc.stopCtx, rc.stopAll = context.WithCancel(ctx)
	defer rc.stopAll()
	rc.sinks = newSinks(m, b, rc.log)
	defer rc.sinks.close()
	g := &generation{c: rc, soft: ctx, hard: ctx, softCancel: func() {}, hardCancel: func() {}}
	parts := map[int]*partition{}
	part := func(id int) *partition {
		if p := parts[id]; p != nil {
			return p
		}
		p := &partition{g: g, c: rc, id: id, tracker: newTracker(-1), budget: newBudget(1 << 62), next: -1}
		parts[id] = p
		return p
	}
	for _, id := range ids {
		if start[id] >= end[id] {
			continue
		}
		n, err := rc.redrivePartition(ctx, id, start[id], end[id], part)
		res.Scanned += n
		if err != nil {
			return res, fmt.Errorf("redrive %s: %w", b.ID, err)
		}
	}
	res.DeadLettered = rc.stats.dlq.Load()
	res.Redriven = rc.stats.recordsIn.Load() - res.DeadLettered
	rc.log.Info().Int64("scanned", res.Scanned).Int64("redriven", res.Redriven).Int64("dead_lettered", res.DeadLettered).Msg("redrive done")
	return res, nil
}

// redrivePartition redrives dead-letter partition id from start to end
// (exclusive) and returns how many records it read.
func (c *consumer) redrivePartition(ctx context.Context, id int, start, end int64, part func(int) *partition) (int64, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.m.brokers, Topic: c.b.DeadLetterTopic, Partition: id, Dialer: c.m.conn.Dialer(),
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: c.m.cfg.maxWait,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return 0, err
	}
	var scanned int64
	var batch []*record
	var into *partition
	builder := kafkaevent.NewBuilder(c.bootstrap, c.b.MaxBatchBytes)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if !into.handle(batch, nil, "") {
			return ctx.Err()
		}
		batch = nil
		return nil
	}
	for next := start; next < end; {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			return scanned, err
		}
		next = msg.Offset + 1
		if msg.Offset >= end {
			break
		}
		scanned++
		orig, ok := c.original(&msg)
		if ok {
			p := part(orig.Partition)
			if p != into || len(batch) == c.b.BatchSize {
				if err := flush(); err != nil {
					return scanned, err
				}
				into = p
				builder.Reset(c.b.Topic, p.id)
			}
			rec := &record{msg: orig, fetched: time.Now()}
			p.tracker.fetch(orig.Offset, orig.Time)
			c.stats.recordsIn.Add(1)
			if !builder.Add(&orig) {
				if err := flush(); err != nil {
					return scanned, err
				}
				builder.Reset(c.b.Topic, p.id)
				if !builder.Add(&orig) { // alone too large for an event
					if !p.deadLetterOversized(rec) {
						return scanned, ctx.Err()
					}
					continue
				}
			}
			batch = append(batch, rec)
		}
	}
	return scanned, flush()
}

// original rebuilds the record a dead-letter record of this binding came
// from; false for another binding's record or one without Ember's headers.
func (c *consumer) original(m *kafka.Message) (kafka.Message, bool) {
	var binding, topic string
	part, off, ts := int64(-1), int64(-1), int64(-1)
	var own []kafka.Header
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderBinding:
			binding = v
		case HeaderTopic:
			topic = v
		case HeaderPartition:
			part, _ = strconv.ParseInt(v, 10, 32)
		case HeaderOffset:
			off, _ = strconv.ParseInt(v, 10, 64)
		case HeaderTimestamp:
			ts, _ = strconv.ParseInt(v, 10, 64)
		case HeaderReason, HeaderErrorType, HeaderStatus, HeaderAttempts, HeaderValueDropped:
		default:
			own = append(own, h)
		}
	}
	if binding != c.b.ID || topic != c.b.Topic || part < 0 || off < 0 {
		return kafka.Message{}, false
	}
	t := m.Time
	if ts >= 0 {
		t = time.UnixMilli(ts)
	}
	return kafka.Message{Topic: topic, Partition: int(part), Offset: off, Key: m.Key, Value: m.Value, Headers: own, Time: t}, true
}
