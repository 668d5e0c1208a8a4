package predict

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestStoreDecaysAndAverages(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	const hl = time.Minute
	s, err := NewStore(rdb, "{ember}:", hl)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.UnixMilli(1_800_000_000_000)
	b := batch{}
	b.field("t1", runField("a")).S = 4
	e := b.field("t1", edgeField("a", "b"))
	e.S, e.D, e.DN, e.Q = 2, 200, 2, "prod" // two follows, 100 ms each
	b.field("t2", runField("a")).S = 7
	if err := s.Apply(ctx, t0, b); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Profiles(ctx, "t1", t0)
	if err != nil || len(ps) != 1 {
		t.Fatalf("profiles: %+v, %v", ps, err)
	}
	p := ps[0]
	if p.From != "a" || p.To != "b" || p.Qualifier != "prod" || !near(p.Runs, 4) || !near(p.Follows, 2) ||
		!near(p.Probability(), 0.5) || p.Delay != 100*time.Millisecond {
		t.Fatalf("after one batch: %+v (p %.3f)", p, p.Probability())
	}

	// One half-life later: what was there halves, the new batch adds, the
	// delay moves a fifth of the way to the new average.
	b = batch{}
	e = b.field("t1", edgeField("a", "b"))
	e.S, e.D, e.DN, e.P, e.H, e.L, e.LN = 1, 300, 1, 2, 1, 50, 1
	if err := s.Apply(ctx, t0.Add(hl), b); err != nil {
		t.Fatal(err)
	}
	ps, _ = s.Profiles(ctx, "t1", t0.Add(hl))
	p = ps[0]
	if !near(p.Runs, 2) || !near(p.Follows, 2) || !near(p.Probability(), 1) || p.Delay != 140*time.Millisecond ||
		!near(p.Predictions, 2) || !near(p.Hits, 1) || p.Load != 50*time.Millisecond {
		t.Fatalf("a half-life later: %+v", p)
	}
	if tenants, err := s.Tenants(ctx); err != nil || len(tenants) != 2 || tenants[0] != "t1" || tenants[1] != "t2" {
		t.Fatalf("tenants: %v, %v", tenants, err)
	}

	// Long unused, the fields decay to nothing and are deleted as read.
	ps, err = s.Profiles(ctx, "t1", t0.Add(30*hl))
	if err != nil || len(ps) != 0 {
		t.Fatalf("decayed profiles: %+v, %v", ps, err)
	}
	if n := rdb.HLen(ctx, "{ember}:profiles:t1").Val(); n != 0 {
		t.Fatalf("%d decayed fields left", n)
	}
	if tenants, _ := s.Tenants(ctx); len(tenants) != 1 || tenants[0] != "t2" {
		t.Fatalf("tenants after t1's profiles decayed: %v", tenants)
	}
}

func TestWorth(t *testing.T) {
	p := &Predictor{}
	p.cfg.setDefaults()
	base := Profile{Runs: 10, Follows: 9, Delay: 300 * time.Millisecond}
	cases := []struct {
		name string
		mod  func(*Profile)
		want bool
	}{
		{"likely", func(*Profile) {}, true},
		{"rare", func(e *Profile) { e.Follows = 2; e.Runs = 2 }, false},
		{"unlikely", func(e *Profile) { e.Runs = 30 }, false},
		{"loads used", func(e *Profile) { e.Predictions, e.Hits = 10, 5 }, true},
		{"loads wasted", func(e *Profile) { e.Predictions, e.Hits = 10, 1 }, false},
		{"few loads yet", func(e *Profile) { e.Predictions, e.Hits = 4, 0 }, true},
		{"load slower than the delay", func(e *Profile) { e.Load = 500 * time.Millisecond }, true},
	}
	for _, c := range cases {
		e := base
		c.mod(&e)
		if got := p.worth(e); got != c.want {
			t.Errorf("%s: worth %v, want %v (%+v)", c.name, got, c.want, e)
		}
	}
}

func TestTraceCause(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_123)
	tr := stampTrace("", "orders", at)
	if c := causeFromTrace(tr); c.Function != "orders" || !c.Started.Equal(at) {
		t.Fatalf("%q: cause %+v", tr, c)
	}
	again := stampTrace(tr, "ship", at.Add(time.Second))
	if c := causeFromTrace(again); c.Function != "ship" || len(again) != len(tr)+len("ship")-len("orders") {
		t.Fatalf("restamped %q (from %q): cause %+v", again, tr, c)
	}
	given := "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	if got := stampTrace(given, "f", at); got != given+";Ember=f@1800000000123" {
		t.Fatalf("stamped %q", got)
	}
	if got := stampTrace("my-own-id", "f", at); got != "my-own-id" {
		t.Fatalf("a trace id not shaped like X-Ray changed: %q", got)
	}
	for _, bad := range []string{"", "Root=1-a-b", "Root=x;Ember=", "Root=x;Ember=f", "Root=x;Ember=@1", "Root=x;Ember=f@x", "Root=x;Ember=a:b@1"} {
		if c := causeFromTrace(bad); c.Function != "" {
			t.Errorf("%q: cause %+v", bad, c)
		}
	}
}
