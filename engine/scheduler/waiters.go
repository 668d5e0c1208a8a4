package scheduler

import (
	"container/list"
	"sync"
)

// queues are the invocations waiting for an instance, FIFO per class and
// tenant (a freed instance of a tenant's active pool serves only that
// tenant; one of the warming pool serves any). A freed instance wakes one
// waiter: the head of its tenant's queue, or for a warm instance the head
// of each tenant's queue of the class. No wake-up storms, no polling.
//
// A waiter joins its queue before it tries to claim, so that an instance
// freed between a failed claim and the wait still wakes it. Until that
// first claim fails it is only trying: it does not make the next one to
// join wait behind it, and a claim may still be held (holds.go) while
// only such waiters are queued (a try that finds nothing gives back this
// scheduler's held claims itself).
type queues struct {
	mu sync.Mutex
	q  map[queueKey]*list.List // of *waiter
}

type queueKey struct{ class, tenant string }

type waiter struct {
	key    queueKey
	elem   *list.Element // nil once woken or removed
	ch     chan struct{} // buffered 1: the wake
	ticket uint64        // its place in the queue shared by every emberd (0: none yet)
	trying bool          // its first claim has not failed yet
}

func newQueues() *queues { return &queues{q: map[queueKey]*list.List{}} }

// join enqueues a waiter at the back of (class, tenant) and reports
// whether it may try to claim at once: nobody there waits (those there,
// if any, are trying too). If so it is trying until waits.
func (qs *queues) join(class, tenant string) (*waiter, bool) {
	w := &waiter{key: queueKey{class, tenant}, ch: make(chan struct{}, 1)}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	l := qs.q[w.key]
	if l == nil {
		l = list.New()
		qs.q[w.key] = l
	}
	w.trying = !waitsLocked(l)
	w.elem = l.PushBack(w)
	return w, w.trying
}

// waits marks a trying waiter whose claim failed as waiting.
func (qs *queues) waits(w *waiter) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	w.trying = false
}

// waitsLocked reports whether a waiter of l waits (is not only trying).
func waitsLocked(l *list.List) bool { return waitingLocked(l) > 0 }

// waitingLocked counts l's waiters that wait (not only trying).
func waitingLocked(l *list.List) int {
	n := 0
	if l == nil {
		return 0
	}
	for e := l.Front(); e != nil; e = e.Next() {
		if !e.Value.(*waiter).trying {
			n++
		}
	}
	return n
}

// head reports whether w is first in its queue (or was just woken).
func (qs *queues) head(w *waiter) bool {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	return w.elem == nil || qs.q[w.key].Front() == w.elem
}

// rejoin puts a woken waiter whose claim failed back in its queue: it
// keeps its place (its ticket's, or the head).
func (qs *queues) rejoin(w *waiter) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if w.elem != nil {
		return
	}
	qs.insertLocked(w)
}

// setTicket records w's ticket (pool.Store.Enqueue) and moves it to its
// ticket's place: this emberd wakes its waiters in the order of the queue
// every emberd shares.
func (qs *queues) setTicket(w *waiter, place int64) {
	n := uint64(max(place, 1))
	qs.mu.Lock()
	defer qs.mu.Unlock()
	w.ticket = n
	if w.elem == nil {
		return
	}
	qs.removeLocked(w)
	qs.insertLocked(w)
}

// insertLocked puts w before the first waiter with a later ticket or none
// (a waiter without a ticket is trying, or about to get a later ticket);
// without a ticket, at the head.
func (qs *queues) insertLocked(w *waiter) {
	l := qs.q[w.key]
	if l == nil {
		l = list.New()
		qs.q[w.key] = l
	}
	if w.ticket == 0 {
		w.elem = l.PushFront(w)
		return
	}
	for e := l.Front(); e != nil; e = e.Next() {
		if o := e.Value.(*waiter); o.ticket == 0 || o.ticket > w.ticket {
			w.elem = l.InsertBefore(w, e)
			return
		}
	}
	w.elem = l.PushBack(w)
}

// leave removes w. A wake w did not use (it claimed on its own, or gave
// up) passes to the next waiter; so does a claim: the instance w took may
// not have been the only idle one, and the next waiter tries at once (if
// it fails, it keeps its place). A next one still trying has its claim
// under way already: it uses the wake only if that claim fails, once it
// has enqueued.
func (qs *queues) leave(w *waiter, claimed bool) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if w.elem != nil {
		qs.removeLocked(w)
	}
	unused := false
	select {
	case <-w.ch:
		unused = true
	default:
	}
	if unused || claimed {
		qs.wakeLocked(w.key)
	}
}

func (qs *queues) removeLocked(w *waiter) {
	l := qs.q[w.key]
	l.Remove(w.elem)
	w.elem = nil
	if l.Len() == 0 {
		delete(qs.q, w.key)
	}
}

// wakeLocked wakes the head of key's queue, if any.
func (qs *queues) wakeLocked(key queueKey) {
	l := qs.q[key]
	if l == nil {
		return
	}
	w := l.Front().Value.(*waiter)
	qs.removeLocked(w)
	select {
	case w.ch <- struct{}{}:
	default: // it holds a wake already
	}
}

// freed wakes waiters for an instance of class that became claimable:
// tenant's head waiter, or with tenant "" (a warming-pool instance) the
// head waiter of every tenant of the class.
func (qs *queues) freed(class, tenant string) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if tenant != "" {
		qs.wakeLocked(queueKey{class, tenant})
		return
	}
	for k := range qs.q {
		if k.class == class {
			qs.wakeLocked(k)
		}
	}
}

// waiting counts the waiters of class (all tenants), not those trying.
func (qs *queues) waiting(class string) int {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	n := 0
	for k, l := range qs.q {
		if k.class == class {
			n += waitingLocked(l)
		}
	}
	return n
}

// waitingFor reports whether an invocation of tenant waits for an
// instance of class (one still trying its first claim does not count).
func (qs *queues) waitingFor(class, tenant string) bool {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	return waitsLocked(qs.q[queueKey{class, tenant}])
}
