package scheduler_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/scheduler"
)

// waitTickets polls until n invocations of t1 hold a ticket for m128: the
// moment an invocation arrives in the queue every emberd shares.
func waitTickets(tb testing.TB, e *env, n int) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		got, err := e.pool.Waiting(context.Background(), "m128", "t1")
		if err != nil {
			tb.Fatal(err)
		}
		if got == int64(n) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d tickets, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // polling the shared queue's length
	}
}

// queueBehind holds the only instance and queues one invocation per id,
// in that order, on scheds in turn; it returns the held claim and a wait
// for the invocations.
func queueBehind(t *testing.T, e *env, scheds []*scheduler.Scheduler, ids []string) (pool.Claim, *sync.WaitGroup) {
	t.Helper()
	ctx := context.Background()
	if err := e.pool.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	held, ok, err := e.pool.Claim(ctx, "t1", "m128", "", time.Now().Add(time.Minute))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	wg := &sync.WaitGroup{}
	for i, id := range ids {
		s := scheds[i%len(scheds)]
		wg.Go(func() {
			inv := &invoke.Invocation{ID: id, Tenant: "t1", Function: "f", Payload: []byte(`{}`)}
			if _, err := s.Invoke(ctx, inv); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		})
		waitTickets(t, e, i+1) // arrival order is the test's order
	}
	return held, wg
}

// served lists the invocations the agent saw, in the order the instance
// served them.
func (e *env) served() []string {
	e.agent.mu.Lock()
	defer e.agent.mu.Unlock()
	var order []string
	for _, r := range e.agent.requests {
		order = append(order, r.InvocationId)
	}
	return order
}

// TestWaitersAreServedInOrder: with one instance held, three invocations
// queue; each release serves the oldest waiter, one at a time.
func TestWaitersAreServedInOrder(t *testing.T) {
	e := setup(t, scheduler.Config{DemandEvery: time.Hour}) // no safety-net retries: wakes only
	ids := []string{"first", "second", "third"}
	held, wg := queueBehind(t, e, []*scheduler.Scheduler{e.sched}, ids)
	if err := e.pool.Release(context.Background(), held, "", true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if order := e.served(); !slices.Equal(order, ids) {
		t.Fatalf("served in order %v", order)
	}
}

// TestWaitersAreServedInOrderAcrossReplicas: two emberds' schedulers on one
// pool; with the only instance held, four invocations queue alternately on
// each; each release serves the oldest waiter of either, one at a time.
func TestWaitersAreServedInOrderAcrossReplicas(t *testing.T) {
	e := setup(t, scheduler.Config{DemandEvery: time.Hour}) // no safety-net retries: wakes only
	ctx := context.Background()
	ids := []string{"first", "second", "third", "fourth"}
	held, wg := queueBehind(t, e, []*scheduler.Scheduler{e.sched, e.replica(t)}, ids)
	// A newcomer without a ticket does not pass them.
	if _, ok, err := e.pool.Claim(ctx, "t1", "m128", "", time.Now().Add(time.Minute)); err != nil || ok {
		t.Fatalf("a claim past four waiters: %v, %v", ok, err)
	}
	if err := e.pool.Release(ctx, held, "", true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if order := e.served(); !slices.Equal(order, ids) {
		t.Fatalf("served in order %v", order)
	}
	if n, err := e.pool.Waiting(ctx, "m128", "t1"); err != nil || n != 0 {
		t.Fatalf("%d tickets left, %v", n, err)
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
		waitTickets(b, e, 1)
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
