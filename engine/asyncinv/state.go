package asyncinv

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/registry"
)

// States of an invocation.
const (
	StateQueued    = "queued"
	StateDeferred  = "deferred" // waiting for idle capacity or its latest start
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

const (
	// keepQueued bounds how long a queued invocation's record lives (the
	// longest event age, and some).
	keepQueued = registry.MaxAsyncMaxAge + time.Hour
	// keepEnded is how long an ended invocation's record lives.
	keepEnded = 24 * time.Hour
	// maxStoredResult bounds the result kept for `invocation get`.
	maxStoredResult = 256 << 10
)

// Invocation is the record of one asynchronous invocation.
type Invocation struct {
	ID, Tenant, Function, Qualifier string
	State                           string
	Attempts                        int
	Enqueued, Updated               time.Time
	// Started is when its first attempt started (zero until then).
	Started time.Time
	// NeededBy and LatestStart: a deferred execution's (else zero).
	NeededBy, LatestStart time.Time
	// Status is the last attempt's outcome (ok, function_error, timeout,
	// crashed); Result its payload (cut at 256 KiB); Condition how it ended.
	Status, Condition, Version string
	Result                     []byte
	ResultTruncated            bool
	// Delivered names the destination its outcome went to ("" if none).
	Delivered string
}

// store keeps invocations in Redis under prefix.
type store struct {
	rdb    redis.UniversalClient
	prefix string
}

func (s *store) key(id string) string { return s.prefix + id }

func (s *store) accept(ctx context.Context, r Request) error {
	k := s.key(r.ID)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "tenant", r.Tenant, "function", r.Function, "qualifier", r.Qualifier, "state", StateQueued,
			"attempts", 0, "enqueued", r.Enqueued.UnixMilli(), "updated", r.Enqueued.UnixMilli())
		p.Expire(ctx, k, keepQueued)
		return nil
	})
	return err
}

func (s *store) running(ctx context.Context, id string, attempt int) error {
	now := time.Now().UnixMilli()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.key(id), "state", StateRunning, "attempts", attempt, "updated", now)
		p.HSetNX(ctx, s.key(id), "started", now)
		return nil
	})
	return err
}

func (s *store) finish(ctx context.Context, id, state, status, condition, version string, result []byte) error {
	truncated := len(result) > maxStoredResult
	if truncated {
		result = result[:maxStoredResult]
	}
	k := s.key(id)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "state", state, "status", status, "condition", condition, "version", version, "result", result,
			"truncated", truncated, "updated", time.Now().UnixMilli())
		p.Expire(ctx, k, keepEnded)
		return nil
	})
	return err
}

func (s *store) delivered(ctx context.Context, id, dest string) error {
	return s.rdb.HSet(ctx, s.key(id), "delivered", dest).Err()
}

// get returns the invocation id, registry.ErrNotFound when unknown (or
// expired).
func (s *store) get(ctx context.Context, id string) (Invocation, error) {
	m, err := s.rdb.HGetAll(ctx, s.key(id)).Result()
	if err != nil {
		return Invocation{}, fmt.Errorf("invocation %s: %w: %w", id, registry.ErrUnavailable, err)
	}
	if len(m) == 0 || m["tenant"] == "" {
		return Invocation{}, fmt.Errorf("invocation %s: %w", id, registry.ErrNotFound)
	}
	inv := Invocation{ID: id, Tenant: m["tenant"], Function: m["function"], Qualifier: m["qualifier"], State: m["state"],
		Status: m["status"], Condition: m["condition"], Version: m["version"], Result: []byte(m["result"]),
		ResultTruncated: m["truncated"] == "1", Delivered: m["delivered"]}
	inv.Attempts, _ = strconv.Atoi(m["attempts"])
	inv.Enqueued, inv.Updated, inv.Started = millis(m["enqueued"]), millis(m["updated"]), millis(m["started"])
	inv.NeededBy, inv.LatestStart = millis(m["needed_by"]), millis(m["latest_start"])
	return inv, nil
}

func millis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
