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
