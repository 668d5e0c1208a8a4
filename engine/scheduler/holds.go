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
// Redis. After an invocation that went well the scheduler keeps its claim
// for HoldIdle; the next invocation of the key takes it if it runs the
// same version with the same logging service and the claim's lease still
// covers it. A hold ends, and the claim is released as before, when it
// idles past HoldIdle, when the key's next invocation cannot use it, when
// an invocation of its class and tenant is about to wait for an instance
// (on this emberd, or on another through pool.WantedChannel), and when Run
// ends.

// hold is one claim kept between a key's invocations.
type hold struct {
	key                       string
	c                         pool.Claim
	vk, logSvc, class, tenant string
	timer                     *time.Timer
}

// holds are the claims a scheduler keeps, by key.
type holds struct {
	s      *Scheduler
	mu     sync.Mutex
	m      map[string]*hold
	closed bool
}

func newHolds(s *Scheduler) *holds { return &holds{s: s, m: map[string]*hold{}} }

// take returns key's held claim if it serves version vk with logging
// service logSvc and its lease lasts past need; a hold it cannot use is
// released.
func (h *holds) take(key, vk, logSvc string, need time.Time) (pool.Claim, bool) {
	h.mu.Lock()
	hd := h.m[key]
	if hd == nil {
		h.mu.Unlock()
		return pool.Claim{}, false
	}
	delete(h.m, key)
	hd.timer.Stop() // its expiry finds it gone from m and does nothing
	h.mu.Unlock()
	if hd.vk != vk || hd.logSvc != logSvc || hd.c.Lease.Before(need) {
		h.s.release(context.Background(), hd.c, hd.vk, true)
		h.s.m.holds.WithLabelValues("released").Inc()
		return pool.Claim{}, false
	}
	h.s.m.holds.WithLabelValues("reused").Inc()
	return hd.c, true
}

// put keeps c for key's next invocation, for at most HoldIdle. It reports
// false, keeping nothing, when the scheduler is closing.
func (h *holds) put(key string, c pool.Claim, vk, logSvc, class, tenant string) bool {
	hd := &hold{key: key, c: c, vk: vk, logSvc: logSvc, class: class, tenant: tenant}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if old := h.m[key]; old != nil { // one invocation per key at a time: not expected
		old.timer.Stop()
		go h.release(old)
	}
	h.m[key] = hd
	hd.timer = time.AfterFunc(h.s.cfg.HoldIdle, func() {
		h.mu.Lock()
		mine := h.m[key] == hd
		if mine {
			delete(h.m, key)
		}
		h.mu.Unlock()
		if mine {
			h.release(hd)
		}
	})
	return true
}

// releaseFor gives back the held claims of class and tenant and reports
// how many.
func (h *holds) releaseFor(class, tenant string) int {
	h.mu.Lock()
	var out []*hold
	for k, hd := range h.m {
		if hd.class == class && hd.tenant == tenant {
			hd.timer.Stop()
			delete(h.m, k)
			out = append(out, hd)
		}
	}
	h.mu.Unlock()
	for _, hd := range out {
		h.release(hd)
	}
	return len(out)
}

// close gives back every held claim; later puts keep nothing.
func (h *holds) close() {
	h.mu.Lock()
	h.closed = true
	all := make([]*hold, 0, len(h.m))
	for k, hd := range h.m {
		hd.timer.Stop()
		delete(h.m, k)
		all = append(all, hd)
	}
	h.mu.Unlock()
	for _, hd := range all {
		h.release(hd)
	}
}

func (h *holds) release(hd *hold) {
	h.s.release(context.Background(), hd.c, hd.vk, true)
	h.s.m.holds.WithLabelValues("released").Inc()
}
