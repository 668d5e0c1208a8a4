package scheduler_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/scheduler"
)

// waitQueued polls until n invocations wait for class.
func waitQueued(tb testing.TB, s *scheduler.Scheduler, class string, n int) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.WaitingFor(class) != n; {
		if time.Now().After(deadline) {
			tb.Fatalf("%d waiting for %s, want %d", s.WaitingFor(class), class, n)
		}
		time.Sleep(time.Millisecond) // polling the queue's length
	}
}

// TestWaitersAreServedInOrder: with one instance held, three invocations
// queue; each release serves the oldest waiter, one at a time.
func TestWaitersAreServedInOrder(t *testing.T) {
	e := setup(t, scheduler.Config{DemandEvery: time.Hour}) // no safety-net retries: wakes only
	ctx := context.Background()
	if err := e.pool.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	held, ok, err := e.pool.Claim(ctx, "t1", "m128", "", time.Now().Add(time.Minute))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	var wg sync.WaitGroup
	for i, id := range []string{"first", "second", "third"} {
		wg.Go(func() {
			inv := &invoke.Invocation{ID: id, Tenant: "t1", Function: "f", Payload: []byte(`{}`)}
			if _, err := e.sched.Invoke(ctx, inv); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		})
		waitQueued(t, e.sched, "m128", i+1) // arrival order is the test's order
	}
	if err := e.pool.Release(ctx, held, "", true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// The agent saw the dispatches in the order the instance served them.
	var order []string
	e.agent.mu.Lock()
	for _, r := range e.agent.requests {
		order = append(order, r.InvocationId)
	}
	e.agent.mu.Unlock()
	if !slices.Equal(order, []string{"first", "second", "third"}) {
		t.Fatalf("served in order %v", order)
	}
}

// BenchmarkFreedToWaiterStart: from the release of the only instance to
// the handler start of the invocation waiting for it (real Redis, the
// scheduler's FIFO queue, a gRPC agent), beside the floor: one Redis
// PUBLISH to a subscriber.
func BenchmarkFreedToWaiterStart(b *testing.B) {
	e := setup(b, scheduler.Config{DemandEvery: time.Hour})
	ctx := context.Background()
	if err := e.pool.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		b.Fatal(err)
	}
	const rounds = 200
	var waits, floor []time.Duration
	for range rounds {
		held, ok, err := e.pool.Claim(ctx, "t1", "m128", "", time.Now().Add(time.Minute))
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		res := make(chan invoke.Result, 1)
		go func() {
			r, err := e.sched.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "f", Payload: []byte(`{}`)})
			if err != nil {
				b.Error(err)
			}
			res <- r
		}()
		waitQueued(b, e.sched, "m128", 1)
		t0 := time.Now()
		if err := e.pool.Release(ctx, held, "", true); err != nil {
			b.Fatal(err)
		}
		r := <-res
		waits = append(waits, r.HandlerStart.Sub(t0))
	}
	sub := e.pool.SubscribeDemand(ctx)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		b.Fatal(err)
	}
	ch := sub.Channel()
	for range rounds {
		t0 := time.Now()
		if err := e.pool.RequestInstance(ctx, "m128", ""); err != nil {
			b.Fatal(err)
		}
		<-ch
		floor = append(floor, time.Since(t0))
	}
	pct := func(d []time.Duration, p int) float64 {
		slices.Sort(d)
		return float64(d[len(d)*p/100]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(waits, 50), "ms-freed-to-start-p50")
	b.ReportMetric(pct(waits, 99), "ms-freed-to-start-p99")
	b.ReportMetric(pct(floor, 50), "ms-publish-floor-p50")
	b.ReportMetric(pct(waits, 50)/pct(floor, 50), "x-floor-p50")
}
