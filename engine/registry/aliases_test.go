package registry

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// twoVersions puts t1's function f and publishes versions 1 and 2.
func twoVersions(t *testing.T, r *Registry) {
	t.Helper()
	ctx := context.Background()
	if _, err := r.PutFunction(ctx, fn("f")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PublishVersion(ctx, "t1", "f"); err != nil {
		t.Fatal(err)
	}
	f := fn("f")
	f.CodeDigest = digestB
	if _, err := r.PutFunction(ctx, f); err != nil {
		t.Fatal(err)
	}
	if v, err := r.PublishVersion(ctx, "t1", "f"); err != nil || v.Version != "2" {
		t.Fatalf("publish 2: %+v, %v", v, err)
	}
}

func TestAliases(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	twoVersions(t, r)

	bad := []struct {
		a    Alias
		want func(error) bool
	}{
		{Alias{Name: "7", Version: "1"}, IsInvalid},       // a version number
		{Alias{Name: "$LATEST", Version: "1"}, IsInvalid}, // the latest
		{Alias{Name: "a b", Version: "1"}, IsInvalid},     // not a name
		{Alias{Name: "prod", Version: "3"}, IsNotFound},   // no version 3
		{Alias{Name: "prod", Version: "1", Extra: map[string]float64{"3": 0.1}}, IsNotFound},
		{Alias{Name: "prod", Version: "1", Extra: map[string]float64{"1": 0.1}}, IsInvalid},
		{Alias{Name: "prod", Version: "1", Extra: map[string]float64{"2": 0}}, IsInvalid},
		{Alias{Name: "prod", Version: "1", Extra: map[string]float64{"2": 1.5}}, IsInvalid},
		{Alias{Name: "prod", Version: "1", Extra: map[string]float64{"2": math.NaN()}}, IsInvalid},
		{Alias{Name: "prod", Version: "", Extra: map[string]float64{"2": 0.1}}, IsInvalid}, // split from $LATEST
		{Alias{Name: "prod", Function: "nope", Version: "1"}, IsNotFound},
	}
	for _, c := range bad {
		c.a.Tenant = "t1"
		if c.a.Function == "" {
			c.a.Function = "f"
		}
		if _, err := r.PutAlias(ctx, c.a, true); !c.want(err) {
			t.Errorf("PutAlias(%+v) = %v", c.a, err)
		}
	}

	if _, err := r.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "prod", Version: "1"}, false); !IsNotFound(err) {
		t.Fatalf("update of a missing alias: %v", err)
	}
	a, err := r.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "prod", Version: "1"}, true)
	if err != nil || a.Created.IsZero() {
		t.Fatalf("create: %+v, %v", a, err)
	}
	if _, err := r.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "prod", Version: "2"}, true); !IsConflict(err) {
		t.Fatalf("second create: %v", err)
	}
	if v, err := r.Resolve(ctx, "t1", "f", "prod"); err != nil || v.Version != "1" || v.CodeDigest != digestA {
		t.Fatalf("resolve prod = %+v, %v", v, err)
	}
	if _, err := r.Resolve(ctx, "t2", "f", "prod"); !IsNotFound(err) {
		t.Fatalf("another tenant resolves the alias: %v", err)
	}
	u, err := r.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "prod", Version: "2"}, false)
	if err != nil || !u.Created.Equal(a.Created) {
		t.Fatalf("update: %+v, %v", u, err)
	}
	if v, _ := r.Resolve(ctx, "t1", "f", "prod"); v.Version != "2" {
		t.Fatalf("resolve after the update: version %s", v.Version)
	}
	if _, err := r.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "dev"}, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Resolve(ctx, "t1", "f", "dev"); v.Version != Latest {
		t.Fatalf("dev (no version: $LATEST) resolves to %s", v.Version)
	}
	as, err := r.ListAliases(ctx, "t1", "f")
	if err != nil || len(as) != 2 || as[0].Name != "dev" || as[1].Name != "prod" || as[1].Version != "2" {
		t.Fatalf("ListAliases = %+v, %v", as, err)
	}
	if _, err := r.ListAliases(ctx, "t1", "nope"); !IsNotFound(err) {
		t.Fatalf("aliases of a missing function: %v", err)
	}

	// Bindings and routes may name an alias, only an existing one, and
	// keep it from being deleted.
	ownTopic(t, r, "t1", "in")
	if _, err := r.PutBinding(ctx, Binding{ID: "b", Tenant: "t1", Function: "f", Qualifier: "canary", Topic: "in"}); !IsNotFound(err) {
		t.Fatalf("binding to a missing alias: %v", err)
	}
	if _, err := r.PutBinding(ctx, Binding{ID: "b", Tenant: "t1", Function: "f", Qualifier: "prod", Topic: "in"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutRoute(ctx, Route{Tenant: "t1", Method: "GET", Path: "/x", Function: "f", Qualifier: "dev"}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteAlias(ctx, "t1", "f", "prod"); !IsConflict(err) {
		t.Fatalf("delete of an alias a binding names: %v", err)
	}
	if err := r.DeleteAlias(ctx, "t1", "f", "dev"); !IsConflict(err) {
		t.Fatalf("delete of an alias a route names: %v", err)
	}
	if err := r.DeleteBinding(ctx, "t1", "b"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteAlias(ctx, "t1", "f", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteAlias(ctx, "t1", "f", "prod"); !IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := r.Resolve(ctx, "t1", "f", "prod"); !IsNotFound(err) {
		t.Fatalf("resolve of a deleted alias: %v", err)
	}

	// A split's longest timeout is its longest version's.
	long := fn("f")
	long.Timeout = time.Minute
	if _, err := r.PutFunction(ctx, long); err != nil {
		t.Fatal(err)
	}
	if v, err := r.PublishVersion(ctx, "t1", "f"); err != nil || v.Version != "3" {
		t.Fatalf("publish 3: %+v, %v", v, err)
	}
	if _, err := r.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "canary", Version: "1", Extra: map[string]float64{"3": 0.01}}, true); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]time.Duration{"canary": time.Minute, "1": 5 * time.Second, "": time.Minute} {
		if got, err := r.LongestTimeout(ctx, "t1", "f", q); err != nil || got != want {
			t.Errorf("LongestTimeout(%q) = %v, %v; want %v", q, got, err, want)
		}
	}
}

// TestAliasSplit: over 10,000 invocations a 10% extra version gets
// 10% ± 3 points, from the cache as from Redis, and a change of the
// weights made through another replica applies at once.
func TestAliasSplit(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r, other := newReg(t, rdb), newReg(t, rdb)
	running(t, r)
	twoVersions(t, r)
	if _, err := other.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "prod", Version: "1", Extra: map[string]float64{"2": 0.1}}, true); err != nil {
		t.Fatal(err)
	}
	share := func() float64 {
		n := 0
		for range 10000 {
			v, err := r.Resolve(ctx, "t1", "f", "prod")
			if err != nil {
				t.Fatal(err)
			}
			switch v.Version {
			case "2":
				n++
			case "1":
			default:
				t.Fatalf("prod resolved to version %s", v.Version)
			}
		}
		return float64(n) / 10000
	}
	if s := share(); math.Abs(s-0.1) > 0.03 {
		t.Fatalf("version 2 got %.1f%% of 10,000, want 10 ± 3", s*100)
	}
	if _, err := other.PutAlias(ctx, Alias{Tenant: "t1", Function: "f", Name: "prod", Version: "1", Extra: map[string]float64{"2": 0.5}}, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new weights to reach the cache", func() bool {
		n := 0
		for range 200 {
			if v, _ := r.Resolve(ctx, "t1", "f", "prod"); v.Version == "2" {
				n++
			}
		}
		return n > 60 // 20 under 10%: a chance of about 1e-20
	})
	if s := share(); math.Abs(s-0.5) > 0.03 {
		t.Fatalf("version 2 got %.1f%% of 10,000, want 50 ± 3", s*100)
	}
}
