package scheduler

import (
	"slices"
	"sync"
	"time"
)

// recentWaits is how many of a class's latest waits WaitTimes covers.
const recentWaits = 256

// waitLog keeps the latest waits for an instance per class, for status.
type waitLog struct {
	mu sync.Mutex
	by map[string]*waitRing
}

type waitRing struct {
	d    []time.Duration
	next int
}

func (l *waitLog) add(class string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]*waitRing{}
	}
	r := l.by[class]
	if r == nil {
		r = &waitRing{}
		l.by[class] = r
	}
	if len(r.d) < recentWaits {
		r.d = append(r.d, d)
		return
	}
	r.d[r.next] = d
	r.next = (r.next + 1) % recentWaits
}

// WaitTimes returns how many of this scheduler's latest invocations of
// class had to wait for an instance (up to 256 are kept) and their wait's
// p50 and p99.
func (s *Scheduler) WaitTimes(class string) (n int, p50, p99 time.Duration) {
	s.waits.mu.Lock()
	r := s.waits.by[class]
	var d []time.Duration
	if r != nil {
		d = slices.Clone(r.d)
	}
	s.waits.mu.Unlock()
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return len(d), at(0.50), at(0.99)
}
