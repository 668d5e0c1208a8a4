// Package settings is the one definition of a binding's Kafka settings,
// with their defaults and limits, shared by the registry (which stores and
// validates them), the consumers (which apply them) and the API (which
// shows them). Its only dependency is consumers/filter (filter patterns).
package settings

import (
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/consumers/filter"
)

// Starting positions: where a new consumer group starts reading a
// partition on which it never committed.
const (
	// TrimHorizon reads from the oldest retained record.
	TrimHorizon = "trim_horizon"
	// Latest reads only records produced after the binding was created:
	// each partition's end is committed before the group first joins.
	Latest = "latest"
	// AtTimestamp reads from the first record at or after StartingTimestamp.
	AtTimestamp = "at_timestamp"
)

// Ordering modes.
const (
	// OrderPartition: one batch in flight per partition; records of a
	// partition are handled in order.
	OrderPartition = "partition"
	// OrderKey: records of the same key are handled in order; different
	// keys in parallel, up to MaxConcurrency batches per partition.
	OrderKey = "key"
	// OrderNone: up to MaxConcurrency batches per partition, in any order.
	OrderNone = "none"
)

// Isolation levels.
const (
	ReadUncommitted = "read_uncommitted"
	ReadCommitted   = "read_committed"
)

// Defaults and limits.
const (
	DefaultBatchSize      = 100
	MaxBatchSize          = 10000
	MaxBatchWindow        = 300 * time.Second
	DefaultMaxBatchBytes  = 6 << 20
	MinMaxBatchBytes      = 1 << 10
	MaxMaxBatchBytes      = 6 << 20
	DefaultMaxConcurrency = 10
	MaxMaxConcurrency     = 100
	// DefaultMaxRetryAttempts: retries after the first attempt of a batch
	// that fails (3 attempts in all). -1 retries until MaxRecordAge.
	DefaultMaxRetryAttempts = 2
	MaxMaxRetryAttempts     = 10000
	MinMaxRecordAge         = 60 * time.Second
	MaxMaxRecordAge         = 7 * 24 * time.Hour
	// MaxFilters bounds the filter patterns of a binding, as Lambda does.
	MaxFilters = 5
	// MaxFilterBytes bounds one filter pattern.
	MaxFilterBytes = 4096
)

// ErrInvalid is wrapped by every Validate error.
var ErrInvalid = errors.New("invalid binding settings")

// Settings are how a binding reads its topic and handles failures. Zero
// values mean the documented defaults (WithDefaults).
type Settings struct {
	// BatchSize is the most records in one invocation: 1..10000.
	// Default: 100.
	BatchSize int
	// BatchWindow is how long to wait for more records once one is there:
	// 0..300s. Default: 0 (take only what is already fetched).
	BatchWindow time.Duration
	// MaxBatchBytes bounds an invocation's event JSON: 1 KiB..6 MiB. A
	// record whose event alone exceeds it is dead-lettered without being
	// invoked. Default: 6 MiB.
	MaxBatchBytes int
	// StartingPosition is TrimHorizon, Latest or AtTimestamp. Default:
	// Latest.
	StartingPosition string
	// StartingTimestamp is where AtTimestamp starts.
	StartingTimestamp time.Time
	// Ordering is OrderPartition, OrderKey or OrderNone. Default:
	// OrderPartition.
	Ordering string
	// MaxConcurrency bounds the batches in flight per partition with
	// OrderKey and OrderNone: 1..100. Default: 10.
	MaxConcurrency int
	// MaxRetryAttempts is how many times a failing batch is retried
	// after its first attempt, 0..10000, or -1 to retry until the records
	// are MaxRecordAge old. Taken as given (0: no retries); the API
	// defaults an omitted value to DefaultMaxRetryAttempts.
	MaxRetryAttempts int
	// MaxRecordAge: records older than this (by their Kafka timestamp) are
	// not invoked (again) but sent to the dead-letter topic: 60s..7d, or 0
	// for no limit. Default: 0.
	MaxRecordAge time.Duration
	// BisectOnError splits a failing batch in two and retries each half on
	// its own, down to single records.
	BisectOnError bool
	// ReportBatchItemFailures lets the function answer
	// {"batchItemFailures":[{"itemIdentifier":"<topic>-<partition>-<offset>"}]}:
	// only the records named, and those after them in their order group,
	// are retried.
	ReportBatchItemFailures bool
	// Filters are Lambda event-filtering patterns (JSON) over each record's
	// "value" (as JSON), "key" and "headers"; a record matching none is
	// committed without an invocation. At most 5. Default: none (every
	// record is invoked).
	Filters []string
	// IsolationLevel is ReadUncommitted or ReadCommitted. Default:
	// ReadUncommitted.
	IsolationLevel string
}

// WithDefaults returns s with every zero field set to its default.
func (s Settings) WithDefaults() Settings {
	if s.BatchSize == 0 {
		s.BatchSize = DefaultBatchSize
	}
	if s.MaxBatchBytes == 0 {
		s.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if s.StartingPosition == "" {
		s.StartingPosition = Latest
	}
	if s.StartingPosition == "earliest" {
		s.StartingPosition = TrimHorizon
	}
	if s.Ordering == "" {
		s.Ordering = OrderPartition
	}
	if s.MaxConcurrency == 0 {
		s.MaxConcurrency = DefaultMaxConcurrency
	}
	if s.IsolationLevel == "" {
		s.IsolationLevel = ReadUncommitted
	}
	return s
}

// Validate reports the first problem with s (after defaults), wrapping
// ErrInvalid.
func (s Settings) Validate() error {
	s = s.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
	}
	switch {
	case s.BatchSize < 1 || s.BatchSize > MaxBatchSize:
		return bad("batch size %d: want 1..%d", s.BatchSize, MaxBatchSize)
	case s.BatchWindow < 0 || s.BatchWindow > MaxBatchWindow:
		return bad("batch window %v: want 0..%v", s.BatchWindow, MaxBatchWindow)
	case s.MaxBatchBytes < MinMaxBatchBytes || s.MaxBatchBytes > MaxMaxBatchBytes:
		return bad("max batch bytes %d: want %d..%d", s.MaxBatchBytes, MinMaxBatchBytes, MaxMaxBatchBytes)
	case s.StartingPosition != TrimHorizon && s.StartingPosition != Latest && s.StartingPosition != AtTimestamp:
		return bad("starting position %q: want %s, %s or %s", s.StartingPosition, TrimHorizon, Latest, AtTimestamp)
	case s.StartingPosition == AtTimestamp && s.StartingTimestamp.IsZero():
		return bad("starting position %s needs a starting timestamp", AtTimestamp)
	case s.StartingPosition != AtTimestamp && !s.StartingTimestamp.IsZero():
		return bad("a starting timestamp goes with starting position %s", AtTimestamp)
	case s.Ordering != OrderPartition && s.Ordering != OrderKey && s.Ordering != OrderNone:
		return bad("ordering %q: want %s, %s or %s", s.Ordering, OrderPartition, OrderKey, OrderNone)
	case s.MaxConcurrency < 1 || s.MaxConcurrency > MaxMaxConcurrency:
		return bad("max concurrency %d: want 1..%d", s.MaxConcurrency, MaxMaxConcurrency)
	case s.MaxRetryAttempts < -1 || s.MaxRetryAttempts > MaxMaxRetryAttempts:
		return bad("max retry attempts %d: want -1 (until the max record age) or 0..%d", s.MaxRetryAttempts, MaxMaxRetryAttempts)
	case s.MaxRecordAge != 0 && (s.MaxRecordAge < MinMaxRecordAge || s.MaxRecordAge > MaxMaxRecordAge):
		return bad("max record age %v: want 0 (none) or %v..%v", s.MaxRecordAge, MinMaxRecordAge, MaxMaxRecordAge)
	case s.MaxRetryAttempts == -1 && s.MaxRecordAge == 0:
		return bad("max retry attempts -1 (retry until the max record age) needs a max record age")
	case len(s.Filters) > MaxFilters:
		return bad("%d filters: at most %d", len(s.Filters), MaxFilters)
	case s.IsolationLevel != ReadUncommitted && s.IsolationLevel != ReadCommitted:
		return bad("isolation level %q: want %s or %s", s.IsolationLevel, ReadUncommitted, ReadCommitted)
	}
	for i, f := range s.Filters {
		if len(f) > MaxFilterBytes {
			return bad("filter %d is %d bytes: at most %d", i, len(f), MaxFilterBytes)
		}
		if _, err := filter.Compile(f); err != nil {
			return bad("filter %d: %v", i, err)
		}
	}
	return nil
}

// Rewind moves a binding's consumer group to a timestamp or to explicit
// offsets on a live binding. It is applied once per partition: its ID is
// written into the metadata of the group's commits, so restarts and other
// replicas do not apply it again.
type Rewind struct {
	// ID tells rewinds apart; a larger one is newer. Positive.
	ID int64
	// To is the timestamp every partition moves to (its first record at or
	// after To), when Offsets is empty.
	To time.Time
	// Offsets are explicit next offsets per partition; partitions not
	// named keep their place. An offset before a partition's start means
	// its start, one past its end means its end.
	Offsets map[int]int64
}

// Validate reports what is wrong with r, wrapping ErrInvalid.
func (r Rewind) Validate() error {
	switch {
	case r.ID <= 0:
		return fmt.Errorf("a rewind needs a positive id: %w", ErrInvalid)
	case r.To.IsZero() && len(r.Offsets) == 0:
		return fmt.Errorf("a rewind needs a timestamp or offsets: %w", ErrInvalid)
	case !r.To.IsZero() && len(r.Offsets) > 0:
		return fmt.Errorf("a rewind takes a timestamp or offsets, not both: %w", ErrInvalid)
	}
	for p, o := range r.Offsets {
		if p < 0 || o < 0 {
			return fmt.Errorf("rewind offset %d of partition %d: both must be non-negative: %w", o, p, ErrInvalid)
		}
	}
	return nil
}
