package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/internal/testenv"
)

func TestValidateRoute(t *testing.T) {
	ok := []Route{{Method: "GET", Path: "/"}, {Method: "ANY", Path: "/a/{id}/b/{rest+}"}, {Method: "POST", Path: "/v1/items.json"}}
	for _, r := range ok {
		if err := ValidateRoute(r); err != nil {
			t.Errorf("%s: %v", r.Key(), err)
		}
	}
	bad := []Route{{Method: "FETCH", Path: "/a"}, {Method: "GET", Path: "a"}, {Method: "GET", Path: "/{rest+}/x"},
		{Method: "GET", Path: "/{id}/{id}"}, {Method: "GET", Path: "/a b"}, {Method: "GET", Path: "/{1x}"},
		{Method: "GET", Path: "/a", MaxBodyBytes: MaxRouteMaxBody + 1}, {Method: "GET", Path: "/a", Timeout: time.Hour}}
	for _, r := range bad {
		if err := ValidateRoute(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s accepted: %v", r.Key(), err)
		}
	}
	if p := (Route{Method: "ANY", Path: "/f/{rest+}"}).Pattern(); p != "/f/{rest...}" {
		t.Errorf("pattern %q", p)
	}
}

// Routes are stored per tenant, conflicts refused, and the route table a
// gateway reads is cached until a change on any replica invalidates it.
func TestRoutes(t *testing.T) {
	ctx := context.Background()
	rdb, addr := testenv.Redis(t)
	rdb2 := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb2.Close() })
	r1, r2 := newReg(t, rdb), newReg(t, rdb2, WithCacheTTL(time.Hour))
	running(t, r1)
	running(t, r2)
	if _, err := r1.PutFunction(ctx, fn("f")); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.PutRoute(ctx, Route{Tenant: "t1", Method: "GET", Path: "/o/{id}", Function: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("route to a missing function: %v", err)
	}
	first, err := r1.PutRoute(ctx, Route{Tenant: "t1", Method: "GET", Path: "/o/{id}", Function: "f"})
	if err != nil || first.Created.IsZero() {
		t.Fatalf("put: %+v %v", first, err)
	}
	if _, err := r1.PutRoute(ctx, Route{Tenant: "t1", Method: "GET", Path: "/o/{other}", Function: "f"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a route matching the same requests: %v", err)
	}
	if _, err := r1.PutRoute(ctx, Route{Tenant: "t2", Method: "GET", Path: "/o/{other}", Function: "f"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's route to t1's function: %v", err)
	}
	routes, _, err := r2.RouteTable(ctx, "t1")
	if err != nil || len(routes) != 1 {
		t.Fatalf("table: %v %v", routes, err)
	}
	var v1 uint64
	waitFor(t, "the table to be cached (two reads, one version)", func() bool {
		_, a, _ := r2.RouteTable(ctx, "t1")
		_, b, _ := r2.RouteTable(ctx, "t1")
		v1 = b
		return a == b
	})
	replaced, err := r1.PutRoute(ctx, Route{Tenant: "t1", Method: "GET", Path: "/o/{id}", Function: "f", Public: true})
	if err != nil || !replaced.Created.Equal(first.Created) {
		t.Fatalf("replace kept Created? %+v %v", replaced, err)
	}
	waitFor(t, "the change to reach the other replica", func() bool {
		rs, v, _ := r2.RouteTable(ctx, "t1")
		return v != v1 && len(rs) == 1 && rs[0].Public
	})
	if err := r1.DeleteRoute(ctx, "t1", "GET", "/o/{id}"); err != nil {
		t.Fatal(err)
	}
	if err := r1.DeleteRoute(ctx, "t1", "GET", "/o/{id}"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	waitFor(t, "the delete to reach the other replica", func() bool {
		rs, _, _ := r2.RouteTable(ctx, "t1")
		return len(rs) == 0
	})
}
