package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// TestClaimOrderWithLoggingService: an invocation with a logging service
// gets the instance configured for it (hot first), never one configured
// for another service while a warming-pool instance is free; one without
// a service gets an unconfigured instance; retiring a function clears its
// hot entries on configured instances too.
func TestClaimOrderWithLoggingService(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"i1", "i2", "i3", "i4"} {
		if err := s.AddWarm(ctx, id, "a1", "m128"); err != nil {
			t.Fatal(err)
		}
	}
	lease := time.Now().Add(time.Minute)
	claim := func(vk, log string) pool.Claim {
		t.Helper()
		c, ok, err := s.ClaimFor(ctx, pool.Want{Tenant: "t1", Class: "m128", VersionKey: vk, LogService: log}, lease)
		if err != nil || !ok {
			t.Fatalf("claim %s with %q: ok=%v err=%v", vk, log, ok, err)
		}
		return c
	}
	release := func(c pool.Claim, vk string) {
		t.Helper()
		if err := s.Release(ctx, c, vk, true); err != nil {
			t.Fatal(err)
		}
	}
	vA := pool.VersionKey("t1", "f", "1")
	vB := pool.VersionKey("t1", "g", "1")

	a := claim(vA, "svcA#1") // warm, now configured for svcA
	release(a, vA)
	if hot := claim(vA, "svcA#1"); hot.InstanceID != a.InstanceID || hot.Kind != pool.KindHot {
		t.Fatalf("same service again: %+v, want hot on %s", hot, a.InstanceID)
	} else {
		release(hot, vA)
	}
	if c := claim(vB, "svcA#1"); c.InstanceID != a.InstanceID || c.Kind != pool.KindActive {
		t.Fatalf("other version, same service: %+v, want the configured instance", c)
	} else {
		release(c, vB)
	}
	// Another service, and no service at all, do not take the instance
	// configured for svcA: the warming pool still has instances.
	b := claim(vA, "svcB#1")
	if b.InstanceID == a.InstanceID || b.Kind != pool.KindWarm {
		t.Fatalf("other service: %+v", b)
	}
	release(b, vA)
	n := claim(vA, "")
	if n.InstanceID == a.InstanceID || n.InstanceID == b.InstanceID || n.Kind != pool.KindWarm {
		t.Fatalf("no service: %+v", n)
	}
	release(n, vA)
	if c := claim(vA, ""); c.InstanceID != n.InstanceID || c.Kind != pool.KindHot {
		t.Fatalf("no service again: %+v, want hot on %s", c, n.InstanceID)
	} else {
		release(c, vA)
	}
	if idle, err := s.IdleHot(ctx, vA); err != nil || idle != 3 {
		t.Fatalf("idle hot %d (%v), want 3 (configured or not)", idle, err)
	}
	insts, err := s.Instances(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		want := map[string]string{a.InstanceID: "svcA#1", b.InstanceID: "svcB#1"}[in.ID]
		if in.LogService != want {
			t.Fatalf("instance %s configured for %q, want %q", in.ID, in.LogService, want)
		}
	}
	// Credentials rotated (svcA#2): the tenant's unconfigured instance
	// where the version is hot, then the last warm one, then, with the
	// warming pool empty, one configured for another service (configured
	// again).
	c1 := claim(vA, "svcA#2")
	c2 := claim(vA, "svcA#2")
	c3 := claim(vA, "svcA#2")
	if c1.InstanceID != n.InstanceID || c1.Kind != pool.KindHot || c2.Kind != pool.KindWarm ||
		c3.Kind != pool.KindActive || (c3.InstanceID != a.InstanceID && c3.InstanceID != b.InstanceID) {
		t.Fatalf("rotated: %+v, %+v, %+v", c1, c2, c3)
	}
	for _, c := range []pool.Claim{c1, c2, c3} {
		release(c, vA)
	}
	if err := s.RetireFunction(ctx, "t1", "f", []string{vA}); err != nil {
		t.Fatal(err)
	}
	if idle, err := s.IdleHot(ctx, vA); err != nil || idle != 0 {
		t.Fatalf("idle hot after retire %d (%v)", idle, err)
	}
	if c := claim(vA, "svcA#2"); c.Kind != pool.KindActive {
		t.Fatalf("after retire: %+v, want active (nothing hot)", c)
	}
}
