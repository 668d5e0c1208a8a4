package asyncinv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Keys of the deferred executions (apart from the invocation records, so
// that no invocation id can name them).
const (
	deferredKey = "{ember}:deferred:waiting" // id -> latest start (ms)
	runningKey  = "{ember}:deferred:running" // id -> lease end (ms)
	ownerKey    = "{ember}:deferred:owner"   // id -> the claim's token
	// maxRunning bounds the deferred executions one replica runs at once,
	// due ones included (the async queue's consumers have 64 too).
	maxRunning = 64
)

func (q *Queue) deferredKey() string { return deferredKey }
func (q *Queue) runningKey() string  { return runningKey }
func (q *Queue) keys() []string      { return []string{deferredKey, runningKey, ownerKey} }

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
		p.Expire(ctx, k, time.Until(r.NeededBy)+keepQueued)
		p.ZAdd(ctx, q.deferredKey(), redis.Z{Score: float64(r.LatestStart.UnixMilli()), Member: r.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("async %s: defer: %w: %w", r.ID, registry.ErrUnavailable, err)
	}
	return nil
}

// The lease scripts. KEYS: waiting, running, owner. A claim holds a random
// token: renewing, finishing and giving back check it, so a replica whose
// lease lapsed (and was taken over) cannot touch the new holder's.
var (
	// ARGV: id, lease end, token. 1 if this caller won the execution.
	claimScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  return 1
end
return 0`)
	// ARGV: id, token, new lease end. 0: the lease is no longer ours.
	renewScript = redis.NewScript(`
if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
  return 1
end
return 0`)
	// ARGV: id, token, score. Gives the execution back (to start again at
	// score), or with score "" drops it (it ended).
	giveBackScript = redis.NewScript(`
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1`)
	// ARGV: id, now. Takes a lapsed lease back, due at once.
	reapScript = redis.NewScript(`
local lease = redis.call('ZSCORE', KEYS[2], ARGV[1])
if lease and tonumber(lease) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
return 0`)
)

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
	inEarly, running := 0, 0
	var lastCap time.Time
	room := func() (all, early int) {
		mu.Lock()
		defer mu.Unlock()
		return maxRunning - running, maxEarly - inEarly
	}
	start := func(id, token string, ahead bool) {
		wg.Add(1)
		mu.Lock()
		running++
		if ahead {
			inEarly++
		}
		mu.Unlock()
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				running--
				if ahead {
					inEarly--
				}
				mu.Unlock()
			}()
			q.runDeferred(ctx, id, token, ahead)
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
		free, _ := room()
		if free <= 0 {
			continue // at the limit: due ones start as others end
		}
		due, err := q.st.rdb.ZRangeByScore(ctx, q.deferredKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(free)}).Result()
		if err != nil {
			q.cfg.Log.Warn().Err(err).Msg("deferred: reading the due executions")
			continue
		}
		for _, id := range due {
			if token, ok := q.claim(ctx, id); ok {
				start(id, token, false)
			}
		}
		all, early := room()
		if early = min(early, all); early <= 0 || now.Sub(lastCap) < capacityEvery {
			continue
		}
		lastCap = now
		if n, err := q.st.rdb.ZCard(ctx, q.deferredKey()).Result(); err != nil || n == 0 {
			continue
		}
		idle, err := capacity(ctx)
		if err != nil {
			q.cfg.Log.Warn().Err(err).Msg("deferred: reading the pool's idle capacity")
			continue
		}
		if idle = min(idle, early); idle <= 0 {
			continue
		}
		next, err := q.st.rdb.ZRange(ctx, q.deferredKey(), 0, int64(idle-1)).Result()
		if err != nil {
			continue
		}
		for _, id := range next {
			if token, ok := q.claim(ctx, id); ok {
				start(id, token, true)
			}
		}
	}
}

// claim takes execution id under a new lease; ok if this caller won it.
func (q *Queue) claim(ctx context.Context, id string) (token string, ok bool) {
	token = newToken()
	lease := time.Now().Add(deferLease).UnixMilli()
	n, err := claimScript.Run(ctx, q.st.rdb, q.keys(), id, lease, token).Int()
	if err != nil {
		q.cfg.Log.Warn().Err(err).Str("invocation", id).Msg("deferred: claim")
	}
	return token, n == 1
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reap puts executions whose lease lapsed (their replica died, or lost
// Redis for longer than the lease) back, due at once.
func (q *Queue) reap(ctx context.Context, now time.Time) error {
	lapsed, err := q.st.rdb.ZRangeByScore(ctx, q.runningKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 100}).Result()
	if err != nil {
		return err
	}
	for _, id := range lapsed {
		n, err := reapScript.Run(ctx, q.st.rdb, q.keys(), id, now.UnixMilli()).Int()
		if err != nil {
			return err
		}
		if n == 1 {
			q.cfg.Log.Warn().Str("invocation", id).Msg("deferred: a replica's lease lapsed; starting it again")
		}
	}
	return nil
}

// runDeferred runs claimed execution id to its end (retries and delivery
// included), renewing its lease meanwhile.
func (q *Queue) runDeferred(ctx context.Context, id, token string, ahead bool) {
	log := q.cfg.Log.With().Str("invocation", id).Logger()
	b, err := q.st.rdb.HGet(ctx, q.st.key(id), "request").Bytes()
	var r Request
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	switch {
	case errors.Is(err, redis.Nil):
		log.Error().Msg("deferred: the execution's record expired: dropped")
		q.giveBack(ctx, id, token, "")
		return
	case err != nil:
		log.Warn().Err(err).Msg("deferred: reading the request; trying again")
		q.giveBack(ctx, id, token, strconv.FormatInt(time.Now().Add(time.Second).UnixMilli(), 10))
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
				n, err := renewScript.Run(renew, q.st.rdb, q.keys(), id, token, time.Now().Add(deferLease).UnixMilli()).Int()
				if err == nil && n == 0 {
					log.Warn().Msg("deferred: the lease lapsed while running (Redis out of reach?); another replica may run it too")
					return
				}
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
		q.giveBack(ctx, id, token, strconv.FormatInt(time.Now().Add(time.Second).UnixMilli(), 10))
		return
	}
	q.giveBack(ctx, id, token, "")
}

// giveBack ends this replica's lease of id: the execution starts again at
// score (ms), or with score "" it ended. A lease taken over meanwhile is
// left to its new holder.
func (q *Queue) giveBack(ctx context.Context, id, token, score string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := giveBackScript.Run(ctx, q.st.rdb, q.keys(), id, token, score).Err(); err != nil {
		q.cfg.Log.Warn().Err(err).Str("invocation", id).Msg("deferred: ending the lease failed; it lapses and another replica looks at it (an ended one is skipped)")
	}
}
