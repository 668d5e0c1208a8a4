package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

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
	// HeaderTimestamp is on dead-letter records: the original record's
	// timestamp in Unix milliseconds (the dead-letter record's own is when
	// it was dead-lettered).
	HeaderTimestamp = "ember.timestamp"
	// HeaderLastOffset is on result records: the batch's last offset
	// (HeaderOffset is its first).
	HeaderLastOffset = "ember.last-offset"
	HeaderVersion    = "ember.version"
	// HeaderFunction and HeaderStarted are on result records: the
	// function that wrote it (TENANT/FUNCTION) and when its handler started
	// (unix ms). A binding reading the result topic passes them on as its
	// invocation's Cause (task profiles learn from it).
	HeaderFunction = "ember.function"
	HeaderStarted  = "ember.started"
	// HeaderValueDropped is on a dead-letter record whose value did not
	// fit the dead-letter topic's max.message.bytes: the original's size.
	// The record stays in its source topic (until retention) at the
	// coordinates the other headers give.
	HeaderValueDropped = "ember.dlq.value-dropped"
)

// dlqHeaders is how many headers deadLetter adds.
const dlqHeaders = 9

// StatusNotInvoked is the HeaderStatus of a record dead-lettered without
// an invocation (too large, or too old).
const StatusNotInvoked = "not_invoked"

// Topic sizes.
const (
	// defaultMaxMessageBytes is Kafka's default max.message.bytes.
	defaultMaxMessageBytes = 1048588
	// dlqHeadroom is added to the source topic's max.message.bytes for
	// its dead-letter topic: room for Ember's headers.
	dlqHeadroom = 64 << 10
	// recordOverhead bounds a record's framing in a batch, beyond its
	// key, value and headers.
	recordOverhead = 128
)

// sinks writes a binding's dead-letter and result records. Each target
// topic is created on first use (retried on the next use after a failure)
// and written by a producer whose requests never exceed the topic's
// max.message.bytes.
type sinks struct {
	m   *Manager
	b   Binding
	log zerolog.Logger

	mu        sync.Mutex
	topics    map[string]*sink
	sourceMax int // the source topic's max.message.bytes, 0 until known
}

type sink struct {
	topic    string
	maxBytes int
	w        *kafka.Writer
}

func newSinks(m *Manager, b Binding, log zerolog.Logger) *sinks {
	return &sinks{m: m, b: b, log: log, topics: map[string]*sink{}}
}

func (s *sinks) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.topics {
		if err := k.w.Close(); err != nil {
			s.log.Warn().Err(err).Str("target_topic", k.topic).Msg("close producer")
		}
	}
	s.topics = map[string]*sink{}
}

// get returns the sink of topic, creating the topic if it is missing.
func (s *sinks) get(ctx context.Context, topic string) (*sink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.topics[topic]; k != nil {
		return k, nil
	}
	cl, done := s.m.adminClient()
	defer done()
	if s.sourceMax == 0 {
		v, err := maxMessageBytes(ctx, cl, s.b.Topic)
		if err != nil {
			return nil, fmt.Errorf("source topic: %w", err)
		}
		s.sourceMax = v
	}
	// A dead-letter topic must take any record its source took, with
	// Ember's headers, or a record could never be dead-lettered; a result
	// topic gets the same room.
	want := s.sourceMax + dlqHeadroom
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: -1, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(want)}},
	}}})
	if err != nil {
		return nil, fmt.Errorf("create topic %q: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return nil, fmt.Errorf("create topic %q: %w", topic, err)
	}
	max, err := maxMessageBytes(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	k := &sink{topic: topic, maxBytes: max, w: &kafka.Writer{
		Addr:         kafka.TCP(s.m.brokers...),
		Transport:    s.m.conn.Transport(),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
		BatchBytes:   int64(max),
	}}
	s.topics[topic] = k
	return k, nil
}

// maxMessageBytes reads topic's max.message.bytes.
func maxMessageBytes(ctx context.Context, cl *kafka.Client, topic string) (int, error) {
	resp, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"max.message.bytes"},
	}}})
	if err != nil {
		return 0, fmt.Errorf("describe topic %q: %w", topic, err)
	}
	for _, res := range resp.Resources {
		if res.Error != nil {
			return 0, fmt.Errorf("describe topic %q: %w", topic, res.Error)
		}
		for _, e := range res.ConfigEntries {
			if e.ConfigName == "max.message.bytes" && e.ConfigValue != "" {
				n, err := strconv.Atoi(e.ConfigValue)
				if err != nil || n <= 0 {
					return 0, fmt.Errorf("topic %q: max.message.bytes %q", topic, e.ConfigValue)
				}
				return n, nil
			}
		}
	}
	return defaultMaxMessageBytes, nil
}

// messageSize bounds what m takes in a record batch.
func messageSize(m *kafka.Message) int {
	n := len(m.Key) + len(m.Value) + recordOverhead
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// produce writes msgs to topic, retrying with backoff until it succeeds
// (true) or the partition is revoked (false). fit, when set, may shrink a
// message that exceeds the topic's limit; without it such a message is an
// error. A failed write is a platform failure.
func (p *partition) produce(topic string, msgs []kafka.Message, fit func(*kafka.Message, int)) bool {
	c := p.c
	bo := p.c.retryBackoff()
	for {
		err := p.tryProduce(topic, msgs, fit)
		if err == nil {
			return true
		}
		if p.g.soft.Err() != nil {
			return false
		}
		c.stats.platformErrors.Add(1)
		c.log.Warn().Err(err).Str("target_topic", topic).Msg("produce failed, retrying")
		if !sleepCtx(p.g.soft, bo.next()) {
			return false
		}
	}
}

func (p *partition) tryProduce(topic string, msgs []kafka.Message, fit func(*kafka.Message, int)) error {
	ctx, cancel := context.WithTimeout(p.g.hard, 30*time.Second)
	defer cancel()
	k, err := p.c.sinks.get(ctx, topic)
	if err != nil {
		return err
	}
	for i := range msgs {
		if messageSize(&msgs[i]) > k.maxBytes && fit != nil {
			fit(&msgs[i], k.maxBytes)
		}
		if n := messageSize(&msgs[i]); n > k.maxBytes {
			return fmt.Errorf("a %d-byte record does not fit topic %q (max.message.bytes %d)", n, topic, k.maxBytes)
		}
	}
	return k.w.WriteMessages(ctx, msgs...)
}

// deadLetter writes recs to the dead-letter topic and reports whether they
// were written (false: revoked first).
func (p *partition) deadLetter(recs []*record, reason, errType, status string, attempts int) bool {
	c := p.c
	msgs := make([]kafka.Message, len(recs))
	for i, rec := range recs {
		m := rec.msg
		h := make([]kafka.Header, 0, len(m.Headers)+8)
		h = append(h, m.Headers...)
		h = append(h,
			kafka.Header{Key: HeaderReason, Value: []byte(reason)},
			kafka.Header{Key: HeaderErrorType, Value: []byte(errType)},
			kafka.Header{Key: HeaderStatus, Value: []byte(status)},
			kafka.Header{Key: HeaderAttempts, Value: strconv.AppendInt(nil, int64(attempts), 10)},
			kafka.Header{Key: HeaderBinding, Value: []byte(c.b.ID)},
			kafka.Header{Key: HeaderTopic, Value: []byte(m.Topic)},
			kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
			kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, m.Offset, 10)},
			kafka.Header{Key: HeaderTimestamp, Value: strconv.AppendInt(nil, m.Time.UnixMilli(), 10)},
		)
		msgs[i] = kafka.Message{Key: m.Key, Value: m.Value, Headers: h, Time: time.Now()}
	}
	// A dead-letter topic made elsewhere may take less than the source:
	// the record is written without its value (then without its key and
	// own headers) rather than never.
	fit := func(m *kafka.Message, limit int) {
		c.log.Error().Str("target_topic", c.b.DeadLetterTopic).Int("record_bytes", messageSize(m)).Int("limit", limit).
			Msg("record too large for the dead-letter topic: writing it without its value")
		m.Headers = append(m.Headers, kafka.Header{Key: HeaderValueDropped, Value: strconv.AppendInt(nil, int64(len(m.Value)), 10)})
		m.Value = nil
		if messageSize(m) > limit {
			m.Key = nil
			m.Headers = m.Headers[len(m.Headers)-dlqHeaders-1:]
		}
	}
	if !p.produce(c.b.DeadLetterTopic, msgs, fit) {
		return false
	}
	c.stats.dlq.Add(int64(len(recs)))
	if c.metrics != nil {
		c.metrics.dlq.Add(float64(len(recs)))
	}
	return true
}

// deadLetterOversized dead-letters a record whose event alone exceeds the
// binding's MaxBatchBytes, without invoking it, and finishes it.
func (p *partition) deadLetterOversized(rec *record) bool {
	size := len(p.encode([]*record{rec}))
	reason := fmt.Sprintf("record event is %d bytes, over the binding's max batch bytes of %d", size, p.c.b.MaxBatchBytes)
	p.c.log.Warn().Int("partition", p.id).Int64("offset", rec.msg.Offset).Int("event_bytes", size).
		Msg("record too large, dead-lettering without invoking")
	if !p.deadLetter([]*record{rec}, reason, ErrorTypePayloadTooLarge, StatusNotInvoked, 0) {
		return false
	}
	p.finish([]*record{rec})
	return true
}

// produceResult writes a successful invocation's response to the result
// topic. tooLarge is set (and nothing written) when the response does not
// fit the topic: a function error. ok is false when revoked first.
func (p *partition) produceResult(recs []*record, res invoke.Result) (tooLarge string, ok bool) {
	c := p.c
	m := kafka.Message{
		Key:   []byte(res.InvocationID),
		Value: res.Payload,
		Headers: []kafka.Header{
			{Key: HeaderBinding, Value: []byte(c.b.ID)},
			{Key: HeaderStatus, Value: []byte(res.Status.String())},
			{Key: HeaderVersion, Value: []byte(res.Version)},
			{Key: HeaderTopic, Value: []byte(c.b.Topic)},
			{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(p.id), 10)},
			{Key: HeaderOffset, Value: strconv.AppendInt(nil, recs[0].msg.Offset, 10)},
			{Key: HeaderLastOffset, Value: strconv.AppendInt(nil, recs[len(recs)-1].msg.Offset, 10)},
			{Key: HeaderFunction, Value: []byte(c.b.Tenant + "/" + c.b.Function)},
		},
	}
	if !res.HandlerStart.IsZero() {
		m.Headers = append(m.Headers, kafka.Header{Key: HeaderStarted, Value: strconv.AppendInt(nil, res.HandlerStart.UnixMilli(), 10)})
	}
	bo := p.c.retryBackoff()
	for {
		ctx, cancel := context.WithTimeout(p.g.hard, 30*time.Second)
		k, err := c.sinks.get(ctx, c.b.ResultTopic)
		cancel()
		if err == nil {
			if n := messageSize(&m); n > k.maxBytes {
				return fmt.Sprintf("a response of %d bytes exceeds the result topic's max.message.bytes of %d", len(m.Value), k.maxBytes), true
			}
			return "", p.produce(c.b.ResultTopic, []kafka.Message{m}, nil)
		}
		if p.g.soft.Err() != nil {
			return "", false
		}
		c.stats.platformErrors.Add(1)
		c.log.Warn().Err(err).Str("target_topic", c.b.ResultTopic).Msg("result topic unavailable, retrying")
		if !sleepCtx(p.g.soft, bo.next()) {
			return "", false
		}
	}
}
