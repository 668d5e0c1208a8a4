package consumers

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// StartingPosition is where a new consumer group starts reading a partition
// that has no committed offset.
type StartingPosition string

const (
	// StartLatest reads only records produced after the binding first
	// started. Like Lambda's event source mapping, the position is fixed
	// once: when a binding starts, each partition on which its group never
	// committed gets the partition's current end offset committed before
	// the group is joined, so a crash before the first regular commit, or
	// records produced while Ember is down, cannot move it. A partition
	// added to the topic later is read from its beginning.
	StartLatest StartingPosition = "latest"
	// StartEarliest reads from the oldest retained record.
	StartEarliest StartingPosition = "earliest"
)

// Limits and defaults of a Binding.
const (
	DefaultBatchSize       = 100
	MaxBatchSize           = 10000
	MaxBatchWindow         = 300 * time.Second
	DefaultMaxPayloadBytes = 6 << 20
	// MinPayloadBytes is the smallest accepted MaxPayloadBytes: an event with
	// one small record needs a few hundred bytes.
	MinPayloadBytes       = 1024
	DefaultMaxAttempts    = 3
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultDLQSuffix      = ".dlq"
	DefaultGroupIDPrefix  = "ember-"
	maxKafkaTopicNameSize = 249
)

// RetryPolicy says how function failures are retried.
type RetryPolicy struct {
	// MaxAttempts is how many times a batch is invoked (the first attempt
	// included) while the function fails, before its records are
	// dead-lettered. Default: 3.
	MaxAttempts int
	// MinBackoff is the wait after the first failure; it doubles per attempt.
	// It also paces platform-failure retries. Default: 100ms.
	MinBackoff time.Duration
	// MaxBackoff caps the wait. Default: 10s.
	MaxBackoff time.Duration
}

// Binding connects a topic to a function. The zero values of the optional
// fields mean the documented defaults; call Validate to check one.
type Binding struct {
	// ID names the binding; it is the Invocation's Source and a metrics label. Required.
	ID string
	// Tenant owns the function. Required.
	Tenant string
	// Function is the function's name within the tenant. Required.
	Function string
	// Qualifier is "" / "$LATEST", a version or an alias.
	Qualifier string
	// Topic is read. Required.
	Topic string
	// GroupID is the consumer group. Default: "ember-" + ID.
	GroupID string
	// BatchSize is the most records in one invocation. Default: 100, max 10000.
	BatchSize int
	// BatchWindow is how long to wait for more records once one is there.
	// Default: 0, take only what is already fetched. Max 300s.
	BatchWindow time.Duration
	// StartingPosition applies when the group has no committed offset
	// (see StartLatest for how `latest` is pinned). Default: latest.
	StartingPosition StartingPosition
	// MaxPayloadBytes bounds an invocation's event JSON: a batch is cut before
	// it would exceed it, and a record whose event alone exceeds it is
	// dead-lettered without being invoked. Default: 6 MiB.
	MaxPayloadBytes int
	// ResultTopic, when set, receives each successful invocation's response
	// payload, keyed by invocation id. Default: "" (none).
	ResultTopic string
	// DeadLetterTopic receives records that could not be handled.
	// Default: Topic + ".dlq".
	DeadLetterTopic string
	// Retry is the function-failure retry policy.
	Retry RetryPolicy
}

// withDefaults returns b with every defaulted field filled.
func (b Binding) withDefaults() Binding {
	if b.GroupID == "" {
		b.GroupID = DefaultGroupIDPrefix + b.ID
	}
	if b.BatchSize == 0 {
		b.BatchSize = DefaultBatchSize
	}
	if b.StartingPosition == "" {
		b.StartingPosition = StartLatest
	}
	if b.MaxPayloadBytes == 0 {
		b.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if b.DeadLetterTopic == "" {
		b.DeadLetterTopic = b.Topic + DefaultDLQSuffix
	}
	if b.Retry.MaxAttempts == 0 {
		b.Retry.MaxAttempts = DefaultMaxAttempts
	}
	if b.Retry.MinBackoff == 0 {
		b.Retry.MinBackoff = DefaultMinBackoff
	}
	if b.Retry.MaxBackoff == 0 {
		b.Retry.MaxBackoff = DefaultMaxBackoff
	}
	if b.Retry.MaxBackoff < b.Retry.MinBackoff {
		b.Retry.MaxBackoff = b.Retry.MinBackoff
	}
	return b
}

// ErrInvalidBinding is wrapped by every Validate error.
var ErrInvalidBinding = errors.New("invalid binding")

// Validate reports the first problem with b, wrapping ErrInvalidBinding.
func (b Binding) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("binding %q: %s: %w", b.ID, fmt.Sprintf(format, args...), ErrInvalidBinding)
	}
	switch {
	case b.ID == "":
		return bad("id is required")
	case b.Tenant == "":
		return bad("tenant is required")
	case b.Function == "":
		return bad("function is required")
	case b.Topic == "":
		return bad("topic is required")
	}
	for name, t := range map[string]string{"topic": b.Topic, "result topic": b.ResultTopic, "dead-letter topic": b.DeadLetterTopic} {
		if err := validTopic(t); err != nil {
			return bad("%s %q: %v", name, t, err)
		}
	}
	if b.BatchSize < 0 || b.BatchSize > MaxBatchSize {
		return bad("batch size %d out of range [1,%d]", b.BatchSize, MaxBatchSize)
	}
	if b.BatchWindow < 0 || b.BatchWindow > MaxBatchWindow {
		return bad("batch window %s out of range [0,%s]", b.BatchWindow, MaxBatchWindow)
	}
	switch b.StartingPosition {
	case "", StartLatest, StartEarliest:
	default:
		return bad("starting position %q: want %q or %q", b.StartingPosition, StartLatest, StartEarliest)
	}
	if b.MaxPayloadBytes < 0 || (b.MaxPayloadBytes > 0 && b.MaxPayloadBytes < MinPayloadBytes) {
		return bad("max payload bytes %d: want 0 (default %d) or at least %d", b.MaxPayloadBytes, DefaultMaxPayloadBytes, MinPayloadBytes)
	}
	if b.Retry.MaxAttempts < 0 {
		return bad("retry max attempts %d is negative", b.Retry.MaxAttempts)
	}
	if b.Retry.MinBackoff < 0 || b.Retry.MaxBackoff < 0 {
		return bad("retry backoff is negative")
	}
	if b.Retry.MaxBackoff > 0 && b.Retry.MinBackoff > b.Retry.MaxBackoff {
		return bad("retry min backoff %s exceeds max backoff %s", b.Retry.MinBackoff, b.Retry.MaxBackoff)
	}
	d := b.withDefaults()
	if d.DeadLetterTopic == d.Topic {
		return bad("dead-letter topic is the source topic")
	}
	if d.ResultTopic == d.Topic {
		return bad("result topic is the source topic (it would invoke itself)")
	}
	if err := validTopic(d.DeadLetterTopic); err != nil {
		return bad("dead-letter topic %q: %v", d.DeadLetterTopic, err)
	}
	return nil
}

func validTopic(t string) error {
	if t == "" {
		return nil
	}
	if len(t) > maxKafkaTopicNameSize {
		return fmt.Errorf("longer than %d characters", maxKafkaTopicNameSize)
	}
	if t == "." || t == ".." {
		return errors.New("not a valid name")
	}
	if i := strings.IndexFunc(t, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		return fmt.Errorf("character %q not allowed (use a-z A-Z 0-9 . _ -)", t[i])
	}
	return nil
}
