package asyncinv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/internal/testenv"
)

// clock records when each invocation started (the runner's part ends at
// the Invoke call; the warm path is the e2e tests').
type clock struct {
	mu      sync.Mutex
	started map[string]time.Time
	runs    map[string]int
}

func (c *clock) Invoke(_ context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.started[inv.ID]; !ok {
		c.started[inv.ID] = time.Now()
	}
	c.runs[inv.ID]++
	return invoke.Result{Status: invoke.StatusOK, Version: "$LATEST", Payload: []byte(`{}`)}, nil
}

func (c *clock) at(id string) (time.Time, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started[id], c.runs[id]
}

func newDeferQueue(t *testing.T) (*Queue, *clock, redis.UniversalClient) {
	t.Helper()
	rdb, _ := testenv.Redis(t)
	reg, err := registry.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PutFunction(context.Background(), registry.Function{Tenant: "t1", Name: "f",
		CodeDigest: "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}); err != nil {
		t.Fatal(err)
	}
	c := &clock{started: map[string]time.Time{}, runs: map[string]int{}}
	return New(rdb, nil, c, reg, Config{}), c, rdb
}

func waitStarted(t *testing.T, c *clock, id string) time.Time {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) { // polling the runner
		if at, n := c.at(id); n > 0 {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never started", id)
		}
	}
}

// TestDeferredRunsAtLatestStartWhenBusy: with no idle capacity an
// execution starts at its latest start, not before, and hardly after;
// with capacity it starts at once; a needed-by time too close is refused.
func TestDeferredRunsAtLatestStartWhenBusy(t *testing.T) {
	q, c, _ := newDeferQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var free sync.Mutex
	capacity := 0
	go func() {
		_ = q.RunDeferred(ctx, func(context.Context) (int, error) { free.Lock(); defer free.Unlock(); return capacity, nil })
	}()
	timeout := time.Second
	if err := q.Defer(ctx, Request{ID: "soon", Tenant: "t1", Function: "f", NeededBy: time.Now().Add(2 * time.Second)}, timeout); !registry.IsInvalid(err) {
		t.Fatalf("needed by in 2 s with 1 s + a 2 s margin: %v", err)
	}
	if err := q.Defer(ctx, Request{ID: "far", Tenant: "t1", Function: "f", NeededBy: time.Now().Add(7 * time.Hour)}, timeout); !registry.IsInvalid(err) {
		t.Fatalf("needed by in 7 h: %v", err)
	}
	r := Request{ID: "busy", Tenant: "t1", Function: "f", NeededBy: time.Now().Add(timeout + StartMargin + 1500*time.Millisecond)}
	if err := q.Defer(ctx, r, timeout); err != nil {
		t.Fatal(err)
	}
	latest := r.NeededBy.Add(-timeout - StartMargin)
	at := waitStarted(t, c, "busy")
	if at.Before(latest) || at.After(latest.Add(500*time.Millisecond)) {
		t.Fatalf("started %v after its latest start, want 0 to 500 ms", at.Sub(latest))
	}
	inv, err := q.Get(ctx, "t1", "busy")
	if err != nil || inv.State != StateSucceeded || inv.Started.IsZero() || !inv.NeededBy.Equal(r.NeededBy.Truncate(time.Millisecond)) {
		t.Fatalf("record %+v, %v", inv, err)
	}

	free.Lock()
	capacity = 3
	free.Unlock()
	asked := time.Now()
	if err := q.Defer(ctx, Request{ID: "idle", Tenant: "t1", Function: "f", NeededBy: time.Now().Add(time.Hour)}, timeout); err != nil {
		t.Fatal(err)
	}
	if at := waitStarted(t, c, "idle"); at.Sub(asked) > 2*time.Second {
		t.Fatalf("with idle capacity it started %v after it was deferred", at.Sub(asked))
	}
}

// TestDeferredLeaseLapses: an execution claimed by a replica that died
// (its lease lapsed) is started again, once.
func TestDeferredLeaseLapses(t *testing.T) {
	q, c, rdb := newDeferQueue(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := q.Defer(ctx, Request{ID: "orphan", Tenant: "t1", Function: "f", NeededBy: time.Now().Add(time.Hour)}, time.Second); err != nil {
		t.Fatal(err)
	}
	// A replica claims it, then dies: its lease ends in the past.
	if n, err := claimScript.Run(ctx, rdb, q.keys(), "orphan", time.Now().Add(-time.Second).UnixMilli(), "dead-replica").Int(); err != nil || n != 1 {
		t.Fatalf("claim: %d, %v", n, err)
	}
	go func() { _ = q.RunDeferred(ctx, func(context.Context) (int, error) { return 0, nil }) }()
	waitStarted(t, c, "orphan")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling the lease's release
		if n, _ := rdb.ZCard(ctx, q.runningKey()).Result(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the finished execution kept its lease")
		}
	}
	if _, runs := c.at("orphan"); runs != 1 {
		t.Fatalf("ran %d times", runs)
	}
	// The dead replica comes back and gives its old claim back: its token
	// is not the lease's, nothing is queued again.
	if n, err := giveBackScript.Run(ctx, rdb, q.keys(), "orphan", "dead-replica", time.Now().UnixMilli()).Int(); err != nil || n != 0 {
		t.Fatalf("a stale claim gave the execution back: %d, %v", n, err)
	}
	if n, _ := rdb.ZCard(ctx, q.deferredKey()).Result(); n != 0 {
		t.Fatalf("%d executions queued again", n)
	}
}
