package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// TestClaimInstance: the instance a suspended invocation is parked on is
// claimed by id: idle, as the main claim (and it leaves the idle sets);
// busy, beside the main claim; with both taken, not at all; another
// tenant's or a forgotten instance never.
func TestClaimInstance(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	lease := time.Now().Add(time.Minute)
	vk := pool.VersionKey("t1", "f", "1")
	first := mustClaim(t, s, "t1", "m128", vk)
	if err := s.Release(ctx, first, vk, true); err != nil {
		t.Fatal(err)
	}

	if _, _, err := s.ClaimInstance(ctx, "i1", "t2", "", lease); !errors.Is(err, pool.ErrInstanceGone) {
		t.Fatalf("another tenant's instance: %v, want ErrInstanceGone", err)
	}
	main, ok, err := s.ClaimInstance(ctx, "i1", "t1", "", lease)
	if err != nil || !ok || main.Kind != pool.KindResume || main.Agent != "a1" {
		t.Fatalf("idle instance: %+v ok=%v err=%v", main, ok, err)
	}
	// It left the idle sets: a claim for the tenant finds nothing.
	if c, ok, err := s.Claim(ctx, "t1", "m128", vk, lease); err != nil || ok {
		t.Fatalf("claim while resumed: %+v ok=%v err=%v, want none", c, ok, err)
	}
	side, ok, err := s.ClaimInstance(ctx, "i1", "t1", "", lease)
	if err != nil || !ok || side.Token == main.Token {
		t.Fatalf("busy instance: %+v ok=%v err=%v, want a claim beside", side, ok, err)
	}
	if _, ok, err := s.ClaimInstance(ctx, "i1", "t1", "", lease); err != nil || ok {
		t.Fatalf("both claims taken: ok=%v err=%v, want none", ok, err)
	}
	if err := s.Release(ctx, side, "", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, main, vk, true); err != nil {
		t.Fatal(err)
	}
	// Back idle and hot for the version.
	if c := mustClaim(t, s, "t1", "m128", vk); c.Kind != pool.KindHot || c.InstanceID != "i1" {
		t.Fatalf("after the resume: %+v, want hot on i1", c)
	}
	if _, err := s.Retire(ctx, "i1", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimInstance(ctx, "i1", "t1", "", lease); !errors.Is(err, pool.ErrInstanceGone) {
		t.Fatalf("retired instance: %v, want ErrInstanceGone", err)
	}
}
