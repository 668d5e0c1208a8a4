package asyncinv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/registry"
)

// Deferred executions: an asynchronous invocation with a "needed by" time
// waits in Redis, ordered by its latest start (needed by − the function's
// timeout − StartMargin), and starts early when the pool has idle capacity,
// else at its latest start, so that it ends by the time it is needed.
const (
	// StartMargin is what Ember allows itself between starting a deferred
	// execution and its handler running: a claim and a cold start on a
	// loaded host.
	StartMargin = 2 * time.Second
	// MaxDeferral bounds how far ahead a needed-by time may be.
	MaxDeferral = registry.MaxAsyncMaxAge
	// deferLease is how long a replica holds a started deferred execution
	// without renewing it; past it another replica starts it again (the
	// first one crashed).
	deferLease = 30 * time.Second
	// maxEarly bounds the deferred executions one replica runs ahead of
	// their latest start at once: idle capacity is for everyone.
	maxEarly = 8
	// capacityEvery is how often the runner asks for the idle capacity.
	capacityEvery = 250 * time.Millisecond
)

// Capacity is how many executions could start now on instances no other
// work needs (the pool's idle instances beyond a reserve, fewer while
// invocations wait for one). Zero or less: the system is loaded.
type Capacity func(ctx context.Context) (int, error)

func (q *Queue) deferredKey() string { return q.st.prefix + "deferred" }
func (q *Queue) runningKey() string  { return q.st.prefix + "deferred-running" }

// Defer records r (r.NeededBy set) to run by r.NeededBy; timeout is the
// function's. A needed-by time too close to keep the promise, or further
// than MaxDeferral, is ErrInvalid.
func (q *Queue) Defer(ctx context.Context, r Request, timeout time.Duration) error {
	now := time.Now()
	if r.Enqueued.IsZero() {
		r.Enqueued = now
	}
	r.LatestStart = r.NeededBy.Add(-timeout - StartMargin)
	switch {
	case r.LatestStart.Before(now):
		return fmt.Errorf("needed by %s: sooner than the function's timeout (%v) and Ember's start margin (%v) from now; invoke it now: %w",
			r.NeededBy.UTC().Format(time.RFC3339), timeout, StartMargin, registry.ErrInvalid)
	case r.NeededBy.After(now.Add(MaxDeferral)):
		return fmt.Errorf("needed by %s: more than %v ahead: %w", r.NeededBy.UTC().Format(time.RFC3339), MaxDeferral, registry.ErrInvalid)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	k := q.st.key(r.ID)
	_, err = q.st.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "tenant", r.Tenant, "function", r.Function, "qualifier", r.Qualifier, "state", StateDeferred,
			"attempts", 0, "enqueued", r.Enqueued.UnixMilli(), "updated", r.Enqueued.UnixMilli(),
			"needed_by", r.NeededBy.UnixMilli(), "latest_start", r.LatestStart.UnixMilli(), "request", b)
		p.Expire(ctx, k, keepQueued)
		p.ZAdd(ctx, q.deferredKey(), redis.Z{Score: float64(r.LatestStart.UnixMilli()), Member: r.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("async %s: defer: %w: %w", r.ID, registry.ErrUnavailable, err)
	}
	return nil
}

// claimScript moves a deferred execution to the running set under a
// lease; 1 if this caller won it.
var claimScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
return 0`)

// requeueScript moves a running execution back to the deferred set at
// score ARGV[2]; 1 if it was still running.
var requeueScript = redis.NewScript(`
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0`)

// RunDeferred starts this replica's share of the deferred executions until
// ctx is done: every one whose latest start has come, and, while capacity
// says the pool is idle, the earliest others. Every replica runs it; each
// execution is claimed by one. An execution whose replica died is started
// again once its lease lapses.
func (q *Queue) RunDeferred(ctx context.Context, capacity Capacity) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	inEarly := 0
	var lastCap time.Time
	start := func(id string, ahead bool) {
		wg.Add(1)
		if ahead {
			mu.Lock()
			inEarly++
			mu.Unlock()
		}
		go func() {
			defer wg.Done()
			if ahead {
				defer func() { mu.Lock(); inEarly--; mu.Unlock() }()
			}
			q.runDeferred(ctx, id, ahead)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		if err := q.reap(ctx, now); err != nil {
			q.cfg.Log.Warn().Err(err).Msg("deferred: reaping lapsed leases")
		}
		due, err := q.st.rdb.ZRangeByScore(ctx, q.deferredKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 100}).Result()
		if err != nil {
			q.cfg.Log.Warn().Err(err).Msg("deferred: reading the due executions")
			continue
		}
		for _, id := range due {
			if q.claim(ctx, id) {
				start(id, false)
			}
		}
		mu.Lock()
		room := maxEarly - inEarly
		mu.Unlock()
		if room <= 0 || now.Sub(lastCap) < capacityEvery {
			continue
		}
		lastCap = now
		if n, err := q.st.rdb.ZCard(ctx, q.deferredKey()).Result(); err != nil || n == 0 {
			continue
		}
		free, err := capacity(ctx)
		if err != nil {
			q.cfg.Log.Warn().Err(err).Msg("deferred: reading the pool's idle capacity")
			continue
		}
		if free = min(free, room); free <= 0 {
			continue
		}
		next, err := q.st.rdb.ZRange(ctx, q.deferredKey(), 0, int64(free-1)).Result()
		if err != nil {
			continue
		}
		for _, id := range next {
			if q.claim(ctx, id) {
				start(id, true)
			}
		}
	}
}

func (q *Queue) claim(ctx context.Context, id string) bool {
	lease := time.Now().Add(deferLease).UnixMilli()
	n, err := claimScript.Run(ctx, q.st.rdb, []string{q.deferredKey(), q.runningKey()}, id, lease).Int()
	if err != nil {
		q.cfg.Log.Warn().Err(err).Str("invocation", id).Msg("deferred: claim")
	}
	return n == 1
}

// reap puts executions whose lease lapsed (their replica died) back, due
// at once.
func (q *Queue) reap(ctx context.Context, now time.Time) error {
	lapsed, err := q.st.rdb.ZRangeByScore(ctx, q.runningKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 100}).Result()
	if err != nil {
		return err
	}
	for _, id := range lapsed {
		if err := requeueScript.Run(ctx, q.st.rdb, []string{q.deferredKey(), q.runningKey()}, id, now.UnixMilli()).Err(); err != nil {
			return err
		}
		q.cfg.Log.Warn().Str("invocation", id).Msg("deferred: a replica's lease lapsed; starting it again")
	}
	return nil
}

// runDeferred runs claimed execution id to its end (retries and delivery
// included), renewing its lease meanwhile.
func (q *Queue) runDeferred(ctx context.Context, id string, ahead bool) {
	log := q.cfg.Log.With().Str("invocation", id).Logger()
	b, err := q.st.rdb.HGet(ctx, q.st.key(id), "request").Bytes()
	var r Request
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	switch {
	case errors.Is(err, redis.Nil):
		log.Error().Msg("deferred: the execution's record expired: dropped")
		_ = q.st.rdb.ZRem(context.WithoutCancel(ctx), q.runningKey(), id).Err()
		return
	case err != nil:
		log.Warn().Err(err).Msg("deferred: reading the request; trying again")
		q.requeue(ctx, id, time.Now().Add(time.Second))
		return
	}
	late := time.Since(r.LatestStart)
	log.Info().Str("tenant", r.Tenant).Str("function", r.Function).Bool("early", ahead).
		Dur("before_latest_start", -late).Msg("deferred: starting")
	if late > time.Second {
		log.Warn().Dur("late", late).Msg("deferred: started past its latest start")
	}
	renew, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(deferLease / 3)
		defer t.Stop()
		for {
			select {
			case <-renew.Done():
				return
			case <-t.C:
				_ = q.st.rdb.ZAddXX(renew, q.runningKey(), redis.Z{Score: float64(time.Now().Add(deferLease).UnixMilli()), Member: id}).Err()
			}
		}
	}()
	err = q.run(ctx, r)
	stop()
	<-done
	if err != nil {
		// Ember's own failure, or shutdown: start it again soon (here or on
		// another replica).
		log.Warn().Err(err).Msg("deferred: not finished; starting it again")
		q.requeue(ctx, id, time.Now().Add(time.Second))
		return
	}
	if err := q.st.rdb.ZRem(context.WithoutCancel(ctx), q.runningKey(), id).Err(); err != nil {
		log.Warn().Err(err).Msg("deferred: finished, but its lease stays until it lapses (run again, then skipped)")
	}
}

func (q *Queue) requeue(ctx context.Context, id string, at time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := requeueScript.Run(ctx, q.st.rdb, []string{q.deferredKey(), q.runningKey()}, id, at.UnixMilli()).Err(); err != nil {
		q.cfg.Log.Warn().Err(err).Str("invocation", id).Msg("deferred: requeue failed; the lease lapses and another replica starts it")
	}
}
