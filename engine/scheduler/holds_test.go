package scheduler_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/internal/testenv"
)

// scripts counts the Lua scripts Redis has run (EVALSHA and EVAL).
func (e *env) scripts(t *testing.T) int64 {
	t.Helper()
	info, err := e.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, m := range regexp.MustCompile(`cmdstat_(?:evalsha|eval):calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		c, _ := strconv.ParseInt(m[1], 10, 64)
		n += c
	}
	return n
}

func (e *env) busy(t *testing.T, id string) bool {
	t.Helper()
	insts, err := e.pool.Instances(context.Background(), "a1")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		if in.ID == id {
			return in.Busy
		}
	}
	t.Fatalf("instance %s not in the pool", id)
	return false
}

// TestHeldClaimSkipsRedis: invocations of one HoldKey after the first run on
// its instance without a Redis script; the held instance goes back as soon
// as another invocation of the tenant needs one, on this emberd or on
// another, and when it idles past HoldIdle.
func TestHeldClaimSkipsRedis(t *testing.T) {
	// No lease collection during the count.
	e := setup(t, scheduler.Config{HoldIdle: time.Second, ReapEvery: time.Hour})
	ctx := context.Background()
	if err := e.pool.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	run := func(s *scheduler.Scheduler, fn, key string) invoke.Result {
		t.Helper()
		res, err := s.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: fn, Payload: []byte(`{}`), HoldKey: key})
		if err != nil || !res.OK() {
			t.Fatalf("invoke %s (key %q): %+v %v", fn, key, res, err)
		}
		return res
	}
	run(e.sched, "f", "b/0/0")
	before := e.scripts(t)
	for i := range 20 {
		if r := run(e.sched, "f", "b/0/0"); r.Instance != "i1" || r.Start != invoke.StartHot {
			t.Fatalf("held invocation %d: %+v, want hot on i1", i, r)
		}
	}
	if n := e.scripts(t) - before; n != 0 {
		t.Fatalf("20 invocations on a held claim ran %d Redis scripts, want 0", n)
	}
	if !e.busy(t, "i1") {
		t.Fatal("the held instance is free in Redis: another claim could take it under the holder")
	}

	// Another function of the tenant, no other instance: it gets the held
	// one instead of waiting for a new instance.
	if r := run(e.sched, "g", ""); r.Instance != "i1" {
		t.Fatalf("a waiter of the tenant got %+v, want the held i1", r)
	}
	// Held again, then wanted by another emberd.
	run(e.sched, "f", "b/0/0")
	if !e.busy(t, "i1") {
		t.Fatal("not held again")
	}
	if r := run(e.replica(t), "g", ""); r.Instance != "i1" {
		t.Fatalf("another emberd's waiter got %+v, want the held i1", r)
	}
	// While that waiter may still be waiting (its ticket's lease), nothing
	// is held: a waiter on another emberd never waits behind a hold.
	run(e.sched, "f", "b/0/0")
	if e.busy(t, "i1") {
		t.Fatal("a claim was held while another emberd's waiter was known")
	}

	// A held claim serves only its class: after the function's memory
	// changed, its next invocation goes to an instance of the new class.
	held := setup(t, scheduler.Config{HoldIdle: time.Second, ReapEvery: time.Hour})
	if err := held.pool.AddWarm(ctx, "i3", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	if r := run(held.sched, "f", "b/0/0"); r.Instance != "i3" {
		t.Fatalf("first invocation on %s, want the m128 i3", r.Instance)
	}
	for id, class := range map[string]string{"i4": "m256", "i5": "m128"} {
		if err := held.pool.AddWarm(ctx, id, "a1", class); err != nil {
			t.Fatal(err)
		}
	}
	// Another caller of the same version takes the held instance (hot)
	// rather than a warm one.
	if r := run(held.sched, "f", ""); r.Instance != "i3" || r.Start != invoke.StartHot {
		t.Fatalf("an invocation without a key ran %+v, want hot on the held i3", r)
	}
	run(held.sched, "f", "b/0/0") // held again
	v := held.res["t1/f"]
	v.MemoryMB = 256
	held.res["t1/f"] = v
	if r := run(held.sched, "f", "b/0/0"); r.Instance != "i4" {
		t.Fatalf("invocation needing 256 MB ran on %s, want the m256 i4 (not the held m128)", r.Instance)
	}

	// Idle past HoldIdle: back in the pool.
	short := setup(t, scheduler.Config{HoldIdle: 20 * time.Millisecond})
	if err := short.pool.AddWarm(ctx, "i2", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	run(short.sched, "f", "b/0/0")
	testenv.Eventually(t, 5*time.Second, "the idle hold released", func() bool { return !short.busy(t, "i2") })
}

// TestConcurrentKeysHold: keys whose invocations overlap (a consumer's
// partitions) each keep their own claim while there are instances for
// all: one claim script per key, however the first claims collide. A
// claim still in flight is not a waiter; taking it for one made every
// key release and claim again, each claim in flight stopping the others
// from holding, for as long as the load lasted.
func TestConcurrentKeysHold(t *testing.T) {
	const keys, rounds = 4, 25
	e := setup(t, scheduler.Config{HoldIdle: time.Second, ReapEvery: time.Hour})
	ctx := context.Background()
	for i := range keys {
		if err := e.pool.AddWarm(ctx, "i"+strconv.Itoa(i), "a1", "m128"); err != nil {
			t.Fatal(err)
		}
	}
	// Redis learns the claim and release scripts (a first EVALSHA fails)
	// on an invocation without a key, before the count.
	if res, err := e.sched.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "f", Payload: []byte(`{}`)}); err != nil || !res.OK() {
		t.Fatalf("first invocation: %+v %v", res, err)
	}
	before := e.scripts(t)
	start := make(chan struct{})
	errs := make(chan error, keys)
	for k := range keys {
		go func() {
			<-start
			key := "b/" + strconv.Itoa(k) + "/0"
			for range rounds {
				res, err := e.sched.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "f", Payload: []byte(`{}`), HoldKey: key})
				if err == nil && !res.OK() {
					err = fmt.Errorf("key %s: %+v", key, res)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	close(start)
	for range keys {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// (A key that finished HoldIdle before the last would have released
	// its hold, one script more: the whole run takes a fraction of it.)
	if n := e.scripts(t) - before; n != keys {
		t.Fatalf("%d keys × %d overlapping invocations ran %d Redis scripts, want %d (one claim per key)", keys, rounds, n, keys)
	}
}
