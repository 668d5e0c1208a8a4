package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/testenv"
)

func newStore(t *testing.T) *pool.Store {
	t.Helper()
	rdb, _ := testenv.Redis(t)
	s, err := pool.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustClaim(t *testing.T, s *pool.Store, tenant, class, vk string) pool.Claim {
	t.Helper()
	c, ok, err := s.Claim(context.Background(), tenant, class, vk, time.Now().Add(time.Minute))
	if err != nil || !ok {
		t.Fatalf("claim %s/%s/%s: ok=%v err=%v", tenant, class, vk, ok, err)
	}
	return c
}

func TestClaimOrder(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"i1", "i2", "i3"} {
		if err := s.AddWarm(ctx, id, "a1", "m128"); err != nil {
			t.Fatal(err)
		}
	}
	vA := pool.VersionKey("t1", "f", "1")
	vB := pool.VersionKey("t1", "g", "1")

	// Empty hot and active pools: the claim comes from the warming pool.
	c1 := mustClaim(t, s, "t1", "m128", vA)
	if c1.Kind != pool.KindWarm {
		t.Fatalf("first claim kind %s, want warm", c1.Kind)
	}
	if err := s.Release(ctx, c1, vA, true); err != nil {
		t.Fatal(err)
	}
	// The same version again: the instance where it is hot.
	c2 := mustClaim(t, s, "t1", "m128", vA)
	if c2.Kind != pool.KindHot || c2.InstanceID != c1.InstanceID {
		t.Fatalf("second claim %+v, want hot on %s", c2, c1.InstanceID)
	}
	if err := s.Release(ctx, c2, vA, true); err != nil {
		t.Fatal(err)
	}
	// Another version of the same tenant: the tenant's active instance.
	c3 := mustClaim(t, s, "t1", "m128", vB)
	if c3.Kind != pool.KindActive || c3.InstanceID != c1.InstanceID {
		t.Fatalf("third claim %+v, want active on %s", c3, c1.InstanceID)
	}
	// While it is busy, the version that was hot there cannot get it.
	c4 := mustClaim(t, s, "t1", "m128", vA)
	if c4.InstanceID == c1.InstanceID || c4.Kind != pool.KindWarm {
		t.Fatalf("claim while busy %+v, want another warm instance", c4)
	}
	// Another tenant never gets t1's instance, even when it is idle.
	if err := s.Release(ctx, c3, vB, true); err != nil {
		t.Fatal(err)
	}
	c5 := mustClaim(t, s, "t2", "m128", pool.VersionKey("t2", "f", "1"))
	if c5.Kind != pool.KindWarm || c5.InstanceID == c1.InstanceID || c5.InstanceID == c4.InstanceID {
		t.Fatalf("other tenant claim %+v", c5)
	}
	// Pool exhausted for t2; another class has nothing.
	if _, ok, _ := s.Claim(ctx, "t2", "m128", "", time.Now().Add(time.Minute)); ok {
		t.Fatal("claimed from an empty pool")
	}
	if _, ok, _ := s.Claim(ctx, "t1", "m256", "", time.Now().Add(time.Minute)); ok {
		t.Fatal("claimed an instance of another class")
	}
}

func TestDeadAgentInstancesAreDropped(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "dead", Addr: "x"}, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.AddWarm(ctx, "d1", "dead", "m128"); err != nil {
		t.Fatal(err)
	}
	// Wait for the real TTL to lapse in Redis.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.Agent(ctx, "dead"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent key did not expire")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok, err := s.Claim(ctx, "t", "m128", "", time.Now().Add(time.Minute)); ok || err != nil {
		t.Fatalf("claimed from a dead agent: ok=%v err=%v", ok, err)
	}
	insts, _ := s.Instances(ctx, "dead")
	if len(insts) != 0 {
		t.Fatalf("dead agent still has %d instances", len(insts))
	}
}

func TestRetireAndLeases(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	_ = s.RegisterAgent(ctx, pool.Agent{ID: "a", Addr: "x"}, time.Minute)
	_ = s.AddWarm(ctx, "i1", "a", "m256")
	c, ok, err := s.Claim(ctx, "t", "m256", "v", time.Now().Add(-time.Millisecond))
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if gone, _ := s.Retire(ctx, c.InstanceID, false); gone {
		t.Fatal("retired a busy instance")
	}
	n, err := s.ExpireLeases(ctx, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("expired %d leases, err %v", n, err)
	}
	occ, err := s.Occupancy(ctx)
	if err != nil || len(occ) != 1 || occ[0].Active != 1 || occ[0].Busy != 0 {
		t.Fatalf("occupancy after lease expiry %+v %v", occ, err)
	}
	if gone, _ := s.Retire(ctx, c.InstanceID, false); !gone {
		t.Fatal("idle instance not retired")
	}
	if gone, _ := s.Retire(ctx, "missing", false); !gone {
		t.Fatal("retiring a missing instance must succeed")
	}
	if _, ok, _ := s.Claim(ctx, "t", "m256", "v", time.Now().Add(time.Minute)); ok {
		t.Fatal("claimed a retired instance")
	}
}

// TestActiveClaimSparesHotInstances: from the tenant's active pool, an
// instance where nothing is hot goes first; one where a version is hot
// only when no other is idle.
func TestActiveClaimSparesHotInstances(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	_ = s.RegisterAgent(ctx, pool.Agent{ID: "a", Addr: "x"}, time.Minute)
	vA, vB := pool.VersionKey("t", "f", "1"), pool.VersionKey("t", "g", "1")
	for i := range 20 { // SPOP order is random: repeat
		for _, id := range []string{"hot", "bare"} {
			if err := s.AddActive(ctx, id, "a", "m128", "t", nil); err != nil {
				t.Fatal(err)
			}
		}
		h := mustClaim(t, s, "t", "m128", vA) // both bare: one is taken, then vA is hot there
		if err := s.Release(ctx, h, vA, true); err != nil {
			t.Fatal(err)
		}
		c1 := mustClaim(t, s, "t", "m128", vB)
		if c1.Kind != pool.KindActive || c1.InstanceID == h.InstanceID {
			t.Fatalf("round %d: claim for another version took %+v, the instance where %s is hot (%s)", i, c1, vA, h.InstanceID)
		}
		c2 := mustClaim(t, s, "t", "m128", vB)
		if c2.InstanceID != h.InstanceID || c2.Kind != pool.KindActive {
			t.Fatalf("round %d: with the bare instance busy, claim took %+v, want %s", i, c2, h.InstanceID)
		}
		for _, c := range []pool.Claim{c1, c2} {
			if _, err := s.Retire(ctx, c.InstanceID, true); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestStaleReleaseChangesNothing: a claim held past its lease returned to
// the pool and the instance was claimed again; the first holder's late
// release (or drop) must not free or drop it under the second.
func TestStaleReleaseChangesNothing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	_ = s.RegisterAgent(ctx, pool.Agent{ID: "a", Addr: "x"}, time.Minute)
	_ = s.AddWarm(ctx, "i1", "a", "m256")
	first, ok, err := s.Claim(ctx, "t", "m256", "v", time.Now().Add(-time.Millisecond))
	if !ok || err != nil || first.Token == "" {
		t.Fatal(first, ok, err)
	}
	if n, err := s.ExpireLeases(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	if err := s.Release(ctx, first, "v", true); !errors.Is(err, pool.ErrStaleClaim) {
		t.Fatalf("release after the lease expired: %v, want ErrStaleClaim", err)
	}
	second := mustClaim(t, s, "t", "m256", "v")
	if second.InstanceID != first.InstanceID || second.Token == first.Token {
		t.Fatalf("second claim %+v after %+v", second, first)
	}
	for _, keep := range []bool{true, false} {
		if err := s.Release(ctx, first, "v", keep); !errors.Is(err, pool.ErrStaleClaim) {
			t.Fatalf("stale release (keep %v) under a new claim: %v", keep, err)
		}
	}
	if occ, _ := s.Occupancy(ctx); len(occ) != 1 || occ[0].Busy != 1 {
		t.Fatalf("occupancy after stale releases %+v: the second claim must still hold it", occ)
	}
	if err := s.Release(ctx, second, "v", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, second, "v", true); !errors.Is(err, pool.ErrStaleClaim) {
		t.Fatalf("a second release of one claim: %v", err)
	}
}

func TestClassFor(t *testing.T) {
	for _, tc := range []struct {
		mb   int64
		want string
	}{{1, "m128"}, {128, "m128"}, {129, "m256"}, {1024, "m1024"}} {
		got, err := pool.ClassFor(tc.mb)
		if err != nil || got != tc.want {
			t.Errorf("ClassFor(%d) = %q, %v; want %q", tc.mb, got, err, tc.want)
		}
	}
	if _, err := pool.ClassFor(4096); err == nil {
		t.Error("ClassFor(4096) accepted")
	}
}

// TestAddActiveRebuildsLostState: an agent puts a tenant's instance back
// after Redis lost it; the tenant's claims find it hot again, another
// tenant's never.
func TestAddActiveRebuildsLostState(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	vA := pool.VersionKey("t1", "f", "1")
	if err := s.AddActive(ctx, "i1", "a1", "m128", "t1", []string{vA}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Claim(ctx, "t2", "m128", "", time.Now().Add(time.Minute)); ok || err != nil {
		t.Fatalf("another tenant claimed t1's instance: %v %v", ok, err)
	}
	c := mustClaim(t, s, "t1", "m128", vA)
	if c.Kind != pool.KindHot || c.InstanceID != "i1" {
		t.Fatalf("claim %+v, want i1 hot", c)
	}
	insts, err := s.Instances(ctx, "a1")
	if err != nil || len(insts) != 1 || insts[0].Tenant != "t1" || !insts[0].Busy {
		t.Fatalf("instances %+v, %v", insts, err)
	}
}
