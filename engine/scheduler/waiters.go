package scheduler

import "sync"

// wakeups is a per-class broadcast: a waiter takes the class's current channel
// before trying to claim, so a release that lands between its failed claim
// and its wait still wakes it (the channel it holds gets closed).
type wakeups struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newWakeups() *wakeups { return &wakeups{ch: map[string]chan struct{}{}} }

// watch returns the channel that the next wake of class closes.
func (w *wakeups) watch(class string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.ch[class]
	if !ok {
		c = make(chan struct{})
		w.ch[class] = c
	}
	return c
}

// wake releases every waiter of class.
func (w *wakeups) wake(class string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.ch[class]; ok {
		close(c)
		delete(w.ch, class)
	}
}
