package e2e

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
)

// TestDeferredExecutions: deferred executions run early while the pool is
// idle; under load (sync invocations keeping instances busy) 200 of them,
// needed 8 to 20 s ahead, all end before they are needed. A needed-by time
// too close to promise is refused.
func TestDeferredExecutions(t *testing.T) {
	s := newStack(t, "m128=3")
	s.deploy("sleep", "sleep", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 3000})
	s.deploy("busy", "sleep", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 3000})

	var ae *client.APIError
	if _, err := s.client.InvokeDeferred(s.ctx(), "sleep", "", time.Now().Add(2*time.Second), []byte(`{}`)); !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
		t.Fatalf("needed in 2 s with a 3 s timeout: %v, want 400", err)
	}

	// Idle: needed in 10 minutes, run now.
	idle := make([]string, 5)
	for i := range idle {
		id, err := s.client.InvokeDeferred(s.ctx(), "sleep", "", time.Now().Add(10*time.Minute), []byte(`{"ms":10}`))
		if err != nil {
			t.Fatal(err)
		}
		idle[i] = id
	}
	for _, inv := range s.waitInvocations(idle, time.Minute) {
		if ahead := inv.LatestStart.Sub(inv.Started); ahead < 9*time.Minute {
			t.Errorf("on an idle pool %s started %v before its latest start, want it at once", inv.ID, ahead)
		}
	}

	// Loaded: six callers keep instances busy while 200 are deferred.
	stop := make(chan struct{})
	var load sync.WaitGroup
	for range 6 {
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = s.client.Invoke(s.ctx(), "busy", "", []byte(`{"ms":300}`))
			}
		}()
	}
	defer func() { close(stop); load.Wait() }()
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		by := time.Now().Add(8*time.Second + rand.N(12*time.Second))
		id, err := s.client.InvokeDeferred(s.ctx(), "sleep", "", by, []byte(`{"ms":200}`))
		if err != nil {
			t.Fatalf("defer %d: %v", i, err)
		}
		ids[i] = id
	}
	var early []time.Duration
	for _, inv := range s.waitInvocations(ids, time.Minute) {
		if inv.Updated.After(inv.NeededBy) {
			t.Errorf("%s ended %v after it was needed (started %v before its latest start)", inv.ID,
				inv.Updated.Sub(inv.NeededBy), inv.LatestStart.Sub(inv.Started))
		}
		early = append(early, inv.LatestStart.Sub(inv.Started))
	}
	sort.Slice(early, func(i, j int) bool { return early[i] < early[j] })
	t.Logf("under load, started ahead of the latest start: min %v, median %v, max %v",
		early[0].Round(time.Millisecond), early[n/2].Round(time.Millisecond), early[n-1].Round(time.Millisecond))
}

// waitInvocations waits until every asynchronous invocation in ids has
// succeeded and returns their records.
func (s *stack) waitInvocations(ids []string, timeout time.Duration) []wire.Invocation {
	s.t.Helper()
	out := make([]wire.Invocation, 0, len(ids))
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for {
			inv, err := s.client.Invocation(s.ctx(), id)
			if err == nil && inv.State == "succeeded" {
				out = append(out, inv)
				break
			}
			if err == nil && inv.State == "failed" {
				s.t.Fatalf("invocation %s failed: %+v", id, inv)
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("invocation %s not done after %v: %+v, %v\n%s", id, timeout, inv, err, s.log())
			}
			time.Sleep(50 * time.Millisecond) // polling the invocation's record
		}
	}
	return out
}
