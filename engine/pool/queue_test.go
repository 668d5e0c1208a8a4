package pool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// TestWaitQueue: while tickets wait, only the head claims (a claim without
// a ticket, or with a later one, gets nothing although an instance is
// idle); the head claiming takes its ticket out. A ticket whose lease
// lapsed (its emberd died) stops holding the queue, and its claim says so
// (ErrNoTicket); Renew puts it back at its place, ahead of later ones.
func TestWaitQueue(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	lease := time.Now().Add(time.Minute)
	if err := s.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "x"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	first, err := s.Enqueue(ctx, "m128", "t1", "first", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Enqueue(ctx, "m128", "t1", "second", time.Minute)
	if err != nil || second <= first {
		t.Fatalf("places %d then %d, %v", first, second, err)
	}
	for _, w := range []pool.Want{{Tenant: "t1", Class: "m128"}, {Tenant: "t1", Class: "m128", Ticket: "second"}} {
		if _, ok, err := s.ClaimFor(ctx, w, lease); ok || err != nil {
			t.Fatalf("%+v claimed past the head: %v, %v", w, ok, err)
		}
	}
	// Another tenant's queue is another queue.
	if err := s.AddWarm(ctx, "i2", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Claim(ctx, "t2", "m128", "", lease); !ok || err != nil {
		t.Fatalf("t2 held up by t1's queue: %v, %v", ok, err)
	}
	c, ok, err := s.ClaimFor(ctx, pool.Want{Tenant: "t1", Class: "m128", Ticket: "first"}, lease)
	if !ok || err != nil {
		t.Fatalf("the head's claim: %+v %v %v", c, ok, err)
	}
	if n, err := s.Waiting(ctx, "m128", "t1"); err != nil || n != 1 {
		t.Fatalf("%d waiting after the head claimed, %v", n, err)
	}

	// A lease that lapses: "late" came after "second" but "second" dies.
	if err := s.Renew(ctx, "m128", "t1", "second", second, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, "m128", "t1", "late", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, c, "", true); err != nil {
		t.Fatal(err)
	}
	// "second" is the head now, its lease short: "late" waits until it
	// lapses, then claims.
	late := pool.Want{Tenant: "t1", Class: "m128", Ticket: "late"}
	if _, ok, _ := s.ClaimFor(ctx, late, lease); ok {
		t.Fatal("a later ticket claimed while the head's lease runs")
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, ok, err = s.ClaimFor(ctx, late, lease)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the head's 50 ms lease never lapsed")
		}
		time.Sleep(10 * time.Millisecond) // waiting for Redis's clock to pass the lease
	}
	if _, _, err := s.ClaimFor(ctx, pool.Want{Tenant: "t1", Class: "m128", Ticket: "second"}, lease); !errors.Is(err, pool.ErrNoTicket) {
		t.Fatalf("the lapsed ticket's claim: %v, want ErrNoTicket", err)
	}
	// Renewed, it is back at its place, ahead of a ticket that came later.
	if _, err := s.Enqueue(ctx, "m128", "t1", "later", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Renew(ctx, "m128", "t1", "second", second, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, c, "", true); err != nil {
		t.Fatal(err)
	}
	later := pool.Want{Tenant: "t1", Class: "m128", Ticket: "later"}
	if _, ok, _ := s.ClaimFor(ctx, later, lease); ok {
		t.Fatal("a later ticket passed the renewed head")
	}
	if err := s.Dequeue(ctx, "m128", "t1", "second"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ClaimFor(ctx, later, lease); !ok || err != nil {
		t.Fatalf("the next head after the first left: %v %v", ok, err)
	}
	if n, err := s.Waiting(ctx, "m128", "t1"); err != nil || n != 0 {
		t.Fatalf("%d waiting at the end, %v", n, err)
	}
}
