package consumers

import (
	"sync"
	"time"
)

// tracker follows one partition's records from fetch to done and gives the
// offset that may be committed: the next offset after the longest finished
// prefix. Records finish out of order in the key and none ordering modes;
// the commit never passes a record that is not done. Safe for concurrent
// use.
type tracker struct {
	mu sync.Mutex
	// fetched holds, in fetch order, the offsets not yet behind the commit
	// point, with whether each is done.
	fetched []slot
	head    int // fetched[head:] is live
	// next is the commit point: every fetched offset below it is done.
	next int64
	// committed is the last commit point sent to the broker.
	committed int64
	// finished holds the records behind the commit point not yet
	// committed, for the record-to-commit latency.
	finished []slot
}

type slot struct {
	offset int64
	ts     int64 // the record's timestamp, Unix nanoseconds
	doneAt int64 // when it was done, Unix nanoseconds
	done   bool
}

// newTracker starts at offset start, the partition's committed offset, or
// any negative value when there is none: the first fetched offset is then
// the start.
func newTracker(start int64) *tracker {
	start = max(start, -1)
	return &tracker{next: start, committed: start}
}

// fetch records offset, of a record with timestamp ts, as fetched and not
// done. Offsets must grow.
func (t *tracker) fetch(offset int64, ts time.Time) {
	t.mu.Lock()
	if t.next < 0 {
		t.next, t.committed = offset, offset
	}
	var nanos int64
	if !ts.IsZero() {
		nanos = ts.UnixNano()
	}
	t.fetched = append(t.fetched, slot{offset: offset, ts: nanos})
	t.mu.Unlock()
}

// timeAt returns the timestamp of the record at offset when the tracker
// still holds it (fetched, not yet committed).
func (t *tracker) timeAt(offset int64) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, part := range [][]slot{t.finished, t.fetched[t.head:]} {
		for _, s := range part {
			if s.offset > offset {
				break
			}
			if s.offset == offset && s.ts != 0 {
				return time.Unix(0, s.ts), true
			}
		}
	}
	return time.Time{}, false
}

// done marks offset finished and advances the commit point over every
// finished record at the front.
func (t *tracker) done(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.fetched[t.head:]
	// The record is usually near the front: search from there.
	for i := range live {
		if live[i].offset == offset {
			live[i].done, live[i].doneAt = true, time.Now().UnixNano()
			break
		}
	}
	for t.head < len(t.fetched) && t.fetched[t.head].done {
		t.next = t.fetched[t.head].offset + 1
		if len(t.finished) < maxFinished {
			t.finished = append(t.finished, t.fetched[t.head])
		}
		t.head++
	}
	if t.head > 1024 && t.head*2 > len(t.fetched) { // compact now and then
		t.fetched = append(t.fetched[:0], t.fetched[t.head:]...)
		t.head = 0
	}
}

// toCommit returns the commit point if it moved since the last commit.
func (t *tracker) toCommit() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.next > t.committed
}

// maxFinished bounds the records a tracker keeps for the record-to-commit
// latency between two commits; past it, records go unobserved.
const maxFinished = 1 << 16

// committedAt records that offset was committed and calls observe with
// the timestamp of each record the commit covered and when it was done
// (Unix nanoseconds).
func (t *tracker) committedAt(offset int64, observe func(ts, doneAt int64)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offset > t.committed {
		t.committed = offset
	}
	n := 0
	for n < len(t.finished) && t.finished[n].offset < offset {
		if observe != nil {
			observe(t.finished[n].ts, t.finished[n].doneAt)
		}
		n++
	}
	t.finished = append(t.finished[:0], t.finished[n:]...)
}

// pending counts fetched records not yet done.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.fetched[t.head:] {
		if !s.done {
			n++
		}
	}
	return n
}
