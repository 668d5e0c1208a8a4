package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits of asynchronous invocation (as Lambda's).
const (
	MaxAsyncRetries        = 2
	DefaultAsyncMaxAge     = 6 * time.Hour
	MinAsyncMaxAge         = time.Minute
	MaxAsyncMaxAge         = 6 * time.Hour
	asyncConfigField       = "async"
	destinationTopicPrefix = "topic:"
	destinationFnPrefix    = "function:"
)

// AsyncConfig is how a function's asynchronous invocations are retried and
// where their outcomes go.
type AsyncConfig struct {
	// MaxRetryAttempts after a function error: 0..2. Default 2.
	MaxRetryAttempts int
	// MaxEventAge drops an invocation not run within it (to OnFailure).
	// 1m..6h. Default 6h.
	MaxEventAge time.Duration
	// OnSuccess and OnFailure receive a record of each outcome.
	OnSuccess, OnFailure *Destination `json:",omitempty"`
}

// Destination is a topic the tenant may produce to, or one of its
// functions (invoked asynchronously with the record).
type Destination struct {
	Topic    string `json:",omitempty"` // the Kafka name, resolved when set
	Function string `json:",omitempty"`
}

// ParseDestination reads "topic:NAME" or "function:NAME".
func ParseDestination(s string) (*Destination, error) {
	switch {
	case s == "":
		return nil, nil
	case strings.HasPrefix(s, destinationTopicPrefix):
		return &Destination{Topic: strings.TrimPrefix(s, destinationTopicPrefix)}, nil
	case strings.HasPrefix(s, destinationFnPrefix):
		return &Destination{Function: strings.TrimPrefix(s, destinationFnPrefix)}, nil
	}
	return nil, fmt.Errorf("destination %q: want topic:NAME or function:NAME: %w", s, ErrInvalid)
}

// String is the destination as ParseDestination reads it.
func (d *Destination) String() string {
	switch {
	case d == nil:
		return ""
	case d.Function != "":
		return destinationFnPrefix + d.Function
	}
	return destinationTopicPrefix + d.Topic
}

// PutAsyncConfig sets tenant's function's asynchronous invocation
// configuration: destination topics must be ones the tenant may produce to
// (stored as their Kafka names), destination functions its own.
func (r *Registry) PutAsyncConfig(ctx context.Context, tenant, name string, c AsyncConfig) (AsyncConfig, error) {
	if err := validNames(tenant, name); err != nil {
		return AsyncConfig{}, err
	}
	if c.MaxRetryAttempts < 0 || c.MaxRetryAttempts > MaxAsyncRetries {
		return AsyncConfig{}, fmt.Errorf("async retries %d: want 0 to %d: %w", c.MaxRetryAttempts, MaxAsyncRetries, ErrInvalid)
	}
	if c.MaxEventAge == 0 {
		c.MaxEventAge = DefaultAsyncMaxAge
	}
	if c.MaxEventAge < MinAsyncMaxAge || c.MaxEventAge > MaxAsyncMaxAge {
		return AsyncConfig{}, fmt.Errorf("async max event age %v: want %v to %v: %w", c.MaxEventAge, MinAsyncMaxAge, MaxAsyncMaxAge, ErrInvalid)
	}
	for _, d := range []*Destination{c.OnSuccess, c.OnFailure} {
		switch {
		case d == nil:
		case d.Function != "":
			if err := ValidName("destination function", d.Function); err != nil {
				return AsyncConfig{}, err
			}
			if d.Function == name {
				return AsyncConfig{}, fmt.Errorf("destination function %q is the function itself (a loop): %w", name, ErrInvalid)
			}
			if _, err := r.GetFunction(ctx, tenant, d.Function); err != nil {
				return AsyncConfig{}, fmt.Errorf("destination: %w", err)
			}
		default:
			t, err := r.ResolveTopic(ctx, tenant, d.Topic, AccessProduce)
			if err != nil {
				return AsyncConfig{}, fmt.Errorf("destination: %w", err)
			}
			d.Topic = t
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return AsyncConfig{}, err
	}
	key := r.fnKey(tenant, name)
	err = r.tx(ctx, "put async config", func(tx *redis.Tx) error {
		if _, err := getFunction(ctx, tx, key); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, asyncConfigField, b)
			return nil
		})
		return err
	}, key)
	if errors.Is(err, ErrNotFound) {
		return AsyncConfig{}, fmt.Errorf("function %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return AsyncConfig{}, err
	}
	return c, nil
}

// AsyncConfigOf returns the function's asynchronous invocation
// configuration (the defaults when none was set).
func (r *Registry) AsyncConfigOf(ctx context.Context, tenant, name string) (AsyncConfig, error) {
	s, err := r.rdb.HGet(ctx, r.fnKey(tenant, name), asyncConfigField).Result()
	if errors.Is(err, redis.Nil) {
		return AsyncConfig{MaxRetryAttempts: MaxAsyncRetries, MaxEventAge: DefaultAsyncMaxAge}, nil
	}
	if err != nil {
		return AsyncConfig{}, unavailable("async config", err)
	}
	var c AsyncConfig
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return AsyncConfig{}, fmt.Errorf("registry: corrupt async config of %s/%s: %w", tenant, name, err)
	}
	return c, nil
}
