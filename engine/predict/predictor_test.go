package predict

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/internal/testenv"
)

// The scheduler's side is replaced here by recorders: what the predictor
// decides is the subject. test/e2e runs it against the real scheduler.

type runner struct{ tag string } // returns tag on the next invocation of "b"

func (r *runner) Invoke(_ context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	res := invoke.Result{HandlerStart: time.Now(), Version: registry.Latest}
	if inv.Function == "b" {
		res.PreloadTag, r.tag = r.tag, ""
	}
	return res, nil
}

type loads struct {
	mu   sync.Mutex
	tags []string
	hot  int64
}

func (l *loads) LoadAhead(_ context.Context, v registry.Version, tag string) (scheduler.Ahead, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tags = append(l.tags, v.Tenant+" "+v.Function+" "+v.Version+" "+tag)
	return scheduler.AheadLoaded, nil
}

func (l *loads) IdleHot(context.Context, string) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hot, nil
}

func (l *loads) done() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tags...)
}

type resolver struct{}

func (resolver) Resolve(_ context.Context, tenant, function, qualifier string) (registry.Version, error) {
	return registry.Version{Tenant: tenant, Function: function, Version: qualifier}, nil
}

func TestPredictorLearnsLoadsAheadAndCountsHits(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	run := &runner{}
	l := &loads{}
	p, err := New(Config{FlushEvery: 10 * time.Millisecond, RefreshEvery: time.Millisecond}, run, rdb, resolver{}, l, l)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	invokeA := func() time.Time {
		t.Helper()
		inv := &invoke.Invocation{Tenant: "t1", Function: "a"}
		if _, err := p.Invoke(ctx, inv); err != nil {
			t.Fatal(err)
		}
		c := causeFromTrace(inv.TraceID) // what A would pass on
		if c.Function != "a" {
			t.Fatalf("A's trace id %q names no cause", inv.TraceID)
		}
		return c.Started
	}
	invokeB := func(after time.Time) {
		t.Helper()
		if _, err := p.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "b", Qualifier: "live",
			Cause: invoke.Cause{Function: "a", Started: after}}); err != nil {
			t.Fatal(err)
		}
	}
	profile := func() Profile {
		ps, err := p.Profiles(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ps {
			if e.From == "a" && e.To == "b" {
				return e
			}
		}
		return Profile{}
	}

	// Only an authenticated caller names a cause in its trace id, not a
	// public route's.
	for source, want := range map[string]string{"route GET /x": "", "api": "a", "async": "a"} {
		inv := &invoke.Invocation{Tenant: "t1", Function: "c", Source: source, TraceID: "Root=1-a-b;Ember=a@1"}
		if _, err := p.Invoke(ctx, inv); err != nil || inv.Cause.Function != want {
			t.Fatalf("source %q: cause %+v, want %q", source, inv.Cause, want)
		}
	}

	// Learning: A, then B caused by A, five times.
	for range 5 {
		invokeB(invokeA())
	}
	testenv.Eventually(t, 10*time.Second, "the profile a -> b", func() bool { return profile().Follows > 4.9 })
	if e := profile(); e.Probability() < 0.99 || e.Qualifier != "live" {
		t.Fatalf("profile: %+v", e)
	}

	// A starts: B is loaded ahead with its qualifier and the pair's tag.
	before := len(l.done())
	// (the first A after the pair became likely enough reads the profiles
	// in the background; a later one acts on them)
	testenv.Eventually(t, 10*time.Second, "a load ahead", func() bool { invokeB(invokeA()); return len(l.done()) > before })
	if got := l.done()[len(l.done())-1]; got != "t1 b live predict:a:b" {
		t.Fatalf("load ahead: %q", got)
	}
	testenv.Eventually(t, 10*time.Second, "the prediction counted", func() bool { return profile().Predictions > 0.9 })

	// B's first invocation on the loaded container reports the tag: a hit.
	run.tag = "predict:a:b"
	invokeB(time.Now())
	testenv.Eventually(t, 10*time.Second, "the hit counted", func() bool { return profile().Hits > 0.9 })
	if n := testutil.ToFloat64(p.m.hits); n != 1 {
		t.Fatalf("hits metric %v", n)
	}

	// Idle instances already hold B for the one running A: nothing loaded.
	l.mu.Lock()
	l.hot = 1
	l.mu.Unlock()
	before = len(l.done())
	hot := func() float64 { return testutil.ToFloat64(p.m.loads.WithLabelValues("already_hot")) }
	was := hot()
	invokeA()
	testenv.Eventually(t, 10*time.Second, "the already-hot outcome", func() bool { return hot() > was })
	if len(l.done()) != before {
		t.Fatalf("loaded ahead although B was hot: %v", l.done())
	}
}

// TestRetriesTeachNothing: a retry is the same run again: it counts no run
// and no follow (a hit still counts: the container was used).
func TestRetriesTeachNothing(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	p, err := New(Config{}, &runner{}, rdb, resolver{}, &loads{}, &loads{})
	if err != nil {
		t.Fatal(err)
	}
	cause := invoke.Cause{Function: "a", Started: time.Now(), Runs: 3}
	p.finished(&invoke.Invocation{Tenant: "t1", Function: "b", Cause: cause, Retry: true}, "t1/b",
		invoke.Result{PreloadTag: "predict:a:b"}, nil)
	if got := p.pending["t1"]; len(got) != 1 || got[edgeField("a", "b")].S != 0 || got[edgeField("a", "b")].H != 1 {
		t.Fatalf("after a retry: %+v", got)
	}
	p.finished(&invoke.Invocation{Tenant: "t1", Function: "b", Cause: cause}, "t1/b", invoke.Result{}, nil)
	if e := p.pending["t1"][edgeField("a", "b")]; e.S != 3 || p.pending["t1"][runField("b")].S != 1 {
		t.Fatalf("after a first attempt following a batch of 3 of a's results: %+v", e)
	}
}
