package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// TestBesideClaim: a claim for another configuration of a function whose
// older one runs on a busy instance takes that instance beside the running
// claim when its memory holds both (one beside at a time); the instance
// returns to the pool only when both claims are released.
func TestBesideClaim(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"i1", "i2", "i3"} {
		if err := s.AddWarm(ctx, id, "a1", "m512"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddWarm(ctx, "small", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	lease := time.Now().Add(time.Minute)
	vk := pool.VersionKey("t1", "f", "$LATEST")
	want := func(class, config string) pool.Want {
		return pool.Want{Tenant: "t1", Class: class, VersionKey: vk, Function: "t1/f", Config: config, MemoryMB: 128}
	}
	claim := func(w pool.Want) pool.Claim {
		t.Helper()
		c, ok, err := s.ClaimFor(ctx, w, lease)
		if err != nil || !ok {
			t.Fatalf("claim %+v: ok=%v err=%v", w, ok, err)
		}
		return c
	}
	old := claim(want("m512", "$LATEST#1"))
	if old.Kind != pool.KindWarm {
		t.Fatalf("first claim %+v", old)
	}
	same := claim(want("m512", "$LATEST#1"))
	if same.InstanceID == old.InstanceID {
		t.Fatal("the same configuration was claimed beside itself")
	}
	side := claim(want("m512", "$LATEST#2"))
	if side.Kind != pool.KindBeside || (side.InstanceID != old.InstanceID && side.InstanceID != same.InstanceID) {
		t.Fatalf("newer configuration: %+v, want beside on %s or %s", side, old.InstanceID, same.InstanceID)
	}
	if side.InstanceID == same.InstanceID {
		old, same = same, old // old: the claim the side runs beside
	}
	// The other busy instance may take one beside it; this one not again.
	third := claim(want("m512", "$LATEST#3"))
	if third.InstanceID == old.InstanceID {
		t.Fatal("a second claim beside the same instance")
	}
	if err := s.Release(ctx, third, vk, true); err != nil {
		t.Fatal(err)
	}
	// The side is done first: the instance stays busy for the old claim.
	if err := s.Release(ctx, side, vk, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, side, vk, true); !errors.Is(err, pool.ErrStaleClaim) {
		t.Fatalf("second release of the side claim: %v", err)
	}
	insts, _ := s.Instances(ctx, "a1")
	for _, in := range insts {
		if in.ID == old.InstanceID && !in.Busy {
			t.Fatal("the instance went idle while its main claim runs")
		}
	}
	if err := s.Release(ctx, same, vk, true); err != nil {
		t.Fatal(err)
	}
	// An idle instance where the version is hot comes before beside.
	hot := claim(want("m512", "$LATEST#2"))
	if hot.Kind != pool.KindHot || hot.InstanceID != same.InstanceID {
		t.Fatalf("hot before beside: %+v", hot)
	}
	// With none idle, #4 goes beside one of the busy claims (#1 or #2).
	again := claim(want("m512", "$LATEST#4"))
	if again.Kind != pool.KindBeside || (again.InstanceID != old.InstanceID && again.InstanceID != hot.InstanceID) {
		t.Fatalf("beside again: %+v", again)
	}
	for _, c := range []pool.Claim{old, again, hot} {
		if err := s.Release(ctx, c, vk, true); err != nil {
			t.Fatal(err)
		}
	}
	if c := claim(want("m512", "$LATEST#2")); c.Kind != pool.KindHot {
		t.Fatalf("after both released: %+v, want hot", c)
	} else if err := s.Release(ctx, c, vk, true); err != nil {
		t.Fatal(err)
	}
	// A claim that finds the instance unusable (keep=false) while the other
	// still runs on it: the instance goes only at the last release.
	main := claim(want("m512", "$LATEST#5"))
	other := want("m512", "7#6") // another version, hot nowhere
	other.VersionKey = pool.VersionKey("t1", "f", "7")
	bad := claim(other)
	if bad.Kind != pool.KindBeside || bad.InstanceID != main.InstanceID {
		t.Fatalf("beside for the unusable case: %+v (main %+v)", bad, main)
	}
	if err := s.Release(ctx, bad, vk, false); err != nil {
		t.Fatal(err)
	}
	present := func(id string) bool {
		insts, _ := s.Instances(ctx, "a1")
		for _, in := range insts {
			if in.ID == id {
				return true
			}
		}
		return false
	}
	if !present(main.InstanceID) {
		t.Fatal("the instance was dropped while its main claim runs")
	}
	if err := s.Release(ctx, main, vk, true); err != nil {
		t.Fatal(err)
	}
	if present(main.InstanceID) {
		t.Fatal("the instance a claim found unusable came back to the pool")
	}
	// An instance whose memory holds only one container: never beside.
	small := claim(want("m128", "$LATEST#1"))
	if c, ok, err := s.ClaimFor(ctx, want("m128", "$LATEST#2"), lease); err != nil || (ok && c.InstanceID == small.InstanceID) {
		t.Fatalf("beside on a full instance: %+v %v %v", c, ok, err)
	}
}
