package scheduler

import (
	"context"
	"sync"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// Held claims: consecutive invocations with the same Invocation.HoldKey (a
// consumer's worker: one partition's batches, one after another) run on
// the instance the previous one used without a claim or a release in
// Redis. After an invocation the function answered (ok or an error) the
// scheduler keeps its claim for HoldIdle; the next invocation that runs
// the same version of the same class with the same logging service takes
// it (the key's own first, else any), while the claim's lease still covers
// that invocation with room to spare. A hold ends, and the claim is
// released as before, when it idles past HoldIdle, when an invocation of
// its class and tenant waits for an instance (on this emberd, or on
// another: Enqueue and every Renew of a waiting ticket publish on
// pool.WantedChannel, and while such a waiter is known no claim is held),
// and when Run ends.

// hold is one claim kept between invocations.
type hold struct {
	key   string
	c     pool.Claim
	match holdMatch
	timer *time.Timer
}

// holdMatch is what an invocation must run to take a hold.
type holdMatch struct{ vk, logSvc, class, tenant string }

// holds are the claims a scheduler keeps, by key and by what they run.
type holds struct {
	s       *Scheduler
	mu      sync.Mutex
	m       map[string]*hold
	byMatch map[holdMatch]map[string]*hold // the same holds, by what they run
	wanted  map[queueKey]time.Time         // until when a waiter of another emberd is known
	closed  bool
	// releasing counts releases under way (close waits for them).
	releasing sync.WaitGroup
}

func newHolds(s *Scheduler) *holds {
	return &holds{s: s, m: map[string]*hold{}, byMatch: map[holdMatch]map[string]*hold{}, wanted: map[queueKey]time.Time{}}
}

// take returns a held claim that an invocation of m can run on, the one
// key holds first, else any; its lease must last past need. A hold of key
// that does not match is released.
func (h *holds) take(key string, m holdMatch, need time.Time) (pool.Claim, bool) {
	h.mu.Lock()
	var stale *hold
	hd := h.m[key]
	if hd != nil && (hd.match != m || hd.c.Lease.Before(need)) {
		stale, hd = hd, nil
		h.dropLocked(stale)
		h.releasing.Add(1)
	}
	if hd == nil {
		for _, o := range h.byMatch[m] {
			if !o.c.Lease.Before(need) {
				hd = o
				break
			}
		}
	}
	if hd != nil {
		h.dropLocked(hd)
	}
	h.mu.Unlock()
	if stale != nil {
		h.release(stale)
	}
	if hd == nil {
		return pool.Claim{}, false
	}
	h.s.m.heldTaken.Inc()
	return hd.c, true
}

// dropLocked forgets hd; its expiry, if it fires, finds it gone. h.mu held.
func (h *holds) dropLocked(hd *hold) {
	hd.timer.Stop()
	h.forgetLocked(hd)
}

// forgetLocked removes hd from both indexes. h.mu held.
func (h *holds) forgetLocked(hd *hold) {
	delete(h.m, hd.key)
	if same := h.byMatch[hd.match]; same != nil {
		delete(same, hd.key)
		if len(same) == 0 {
			delete(h.byMatch, hd.match)
		}
	}
}

// put keeps c for the next invocation of m, for at most HoldIdle. It
// reports false, keeping nothing, when the scheduler is closing or a
// waiter of m's class and tenant is known.
func (h *holds) put(key string, c pool.Claim, m holdMatch) bool {
	hd := &hold{key: key, c: c, match: m}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || time.Now().Before(h.wanted[queueKey{m.class, m.tenant}]) {
		return false
	}
	if old := h.m[key]; old != nil { // one invocation per key at a time: not expected
		h.dropLocked(old)
		h.releasing.Add(1)
		go h.release(old)
	}
	h.m[key] = hd
	same := h.byMatch[m]
	if same == nil {
		same = map[string]*hold{}
		h.byMatch[m] = same
	}
	same[key] = hd
	hd.timer = time.AfterFunc(h.s.cfg.HoldIdle, func() {
		h.mu.Lock()
		mine := h.m[key] == hd
		if mine {
			h.forgetLocked(hd)
			h.releasing.Add(1)
		}
		h.mu.Unlock()
		if mine {
			h.release(hd)
		}
	})
	return true
}

// want records that an invocation of tenant waits for an instance of
// class (until the waiter's ticket would lapse unrenewed) and gives back
// the claims held for that class and tenant.
func (h *holds) want(class, tenant string, ttl time.Duration) {
	h.mu.Lock()
	k := queueKey{class, tenant}
	if until := time.Now().Add(ttl); until.After(h.wanted[k]) {
		h.wanted[k] = until
	}
	for qk, t := range h.wanted { // forget the lapsed ones
		if time.Now().After(t) {
			delete(h.wanted, qk)
		}
	}
	h.mu.Unlock()
	h.releaseFor(class, tenant)
}

// releaseFor gives back the held claims of class and tenant and reports
// how many.
func (h *holds) releaseFor(class, tenant string) int {
	return h.releaseWhere(func(m holdMatch) bool { return m.class == class && m.tenant == tenant })
}

// close gives back every held claim and waits for releases under way;
// later puts keep nothing.
func (h *holds) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.releaseWhere(func(holdMatch) bool { return true })
	h.releasing.Wait()
}

// releaseWhere gives back the held claims whose match is chosen and
// reports how many.
func (h *holds) releaseWhere(chosen func(holdMatch) bool) int {
	h.mu.Lock()
	var out []*hold
	for m, same := range h.byMatch {
		if chosen(m) {
			for _, hd := range same {
				out = append(out, hd)
			}
		}
	}
	for _, hd := range out {
		h.dropLocked(hd)
	}
	h.releasing.Add(len(out))
	h.mu.Unlock()
	for _, hd := range out {
		h.release(hd)
	}
	return len(out)
}

// release gives hd back; the caller counted it in h.releasing under h.mu
// (close waits for every release it did not see).
func (h *holds) release(hd *hold) {
	defer h.releasing.Done()
	h.s.releaseHeld(hd)
}

// releaseHeld gives a held claim back to the pool, its version hot.
func (s *Scheduler) releaseHeld(hd *hold) {
	s.release(context.Background(), hd.c, hd.match.vk, true)
	s.m.heldReleased.Inc()
}
