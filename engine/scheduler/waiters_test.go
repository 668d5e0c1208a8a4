package scheduler

import "testing"

func woken(w *waiter) bool {
	select {
	case <-w.ch:
		return true
	default:
		return false
	}
}

// TestQueues: a freed instance wakes one waiter, the oldest of its tenant
// (any tenant's for a warm one); a wake that was not used, and a claim,
// pass to the next waiter; a second wake never blocks.
func TestQueues(t *testing.T) {
	q := newQueues()
	a, first := q.join("m128", "t1")
	q.waits(a) // a's first claim failed
	b, second := q.join("m128", "t1")
	c, _ := q.join("m128", "t2")
	if !first || second {
		t.Fatalf("first %v, second %v", first, second)
	}
	q.freed("m128", "t1")
	if !woken(a) || woken(b) || woken(c) {
		t.Fatal("t1's release should wake only a")
	}
	q.rejoin(a) // a's claim failed: it keeps its place
	q.freed("m128", "")
	if !woken(a) || woken(b) || !woken(c) {
		t.Fatal("a warm instance should wake the head of each tenant")
	}
	q.rejoin(a)
	q.rejoin(c)
	q.freed("m128", "t1") // a woken; before it reads the wake, its own retry fails:
	q.rejoin(a)           // back at the head, holding the wake
	q.freed("m128", "t1") // a holds a wake already: this must not block
	if !woken(a) || woken(b) {
		t.Fatal("a should hold one wake, b none")
	}
	q.rejoin(a)
	q.freed("m128", "t1") // a is woken, then gives up without using it
	q.leave(a, false)
	if !woken(b) {
		t.Fatal("a's unused wake did not pass to b")
	}
	d, _ := q.join("m128", "t1")
	q.leave(b, true) // b claimed: the next tries at once
	if !woken(d) {
		t.Fatal("b's claim did not wake d")
	}
	q.leave(c, false)
	q.leave(d, true)
	if n := q.waiting("m128"); n != 0 {
		t.Fatalf("%d still waiting", n)
	}
}

// TestTryingIsNotWaiting: invocations that have not yet failed a claim
// all try at once, and none of them counts as waiting (which would stop
// the scheduler from holding claims); the first that fails does.
func TestTryingIsNotWaiting(t *testing.T) {
	q := newQueues()
	a, aFirst := q.join("m128", "t1")
	b, bFirst := q.join("m128", "t1")
	if !aFirst || !bFirst {
		t.Fatalf("two trying invocations: first %v, %v; want both to try at once", aFirst, bFirst)
	}
	if q.waitingFor("m128", "t1") {
		t.Fatal("invocations only trying their first claim count as waiting")
	}
	if n := q.waiting("m128"); n != 0 {
		t.Fatalf("waiting(m128) = %d, want 0 (both only trying)", n)
	}
	q.waits(b) // b's claim failed
	if !q.waitingFor("m128", "t1") || q.waitingFor("m128", "t2") || q.waiting("m128") != 1 {
		t.Fatal("after b's failed claim: b should be waiting for m128 (t1), nobody of t2")
	}
	c, cFirst := q.join("m128", "t1")
	if cFirst {
		t.Fatal("an invocation joining behind a waiter tried at once")
	}
	q.leave(a, true) // a claimed: the next (b) tries
	if !woken(b) || woken(c) {
		t.Fatal("a's claim should wake b, the head")
	}
	q.leave(b, true)
	if !woken(c) {
		t.Fatal("b's claim should wake c")
	}
	q.leave(c, true)
	if q.waitingFor("m128", "t1") {
		t.Fatal("still waiting after everyone left")
	}
}
