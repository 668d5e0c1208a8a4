package consumers

import (
	"slices"
	"testing"
	"time"
)

// at is the timestamp of offset o in these tests.
func at(o int64) time.Time { return time.Unix(0, 1000+o) }

func TestTrackerCommitsContiguousPrefix(t *testing.T) {
	tr := newTracker(10)
	for _, o := range []int64{10, 11, 13, 14} { // 12 is a gap (compaction)
		tr.fetch(o, at(o))
	}
	if _, moved := tr.toCommit(); moved {
		t.Fatal("nothing done, yet a commit")
	}
	tr.done(11)
	if off, moved := tr.toCommit(); moved {
		t.Fatalf("11 done before 10: commit %d", off)
	}
	before := time.Now().UnixNano()
	tr.done(10)
	if off, moved := tr.toCommit(); !moved || off != 12 {
		t.Fatalf("commit %d %v, want 12", off, moved)
	}
	var seen []int64
	tr.committedAt(12, func(ts, doneAt int64) {
		seen = append(seen, ts-1000)
		if ts-1000 == 10 && (doneAt < before || doneAt > time.Now().UnixNano()) {
			t.Errorf("record 10 done at %d, not between %d and now", doneAt, before)
		}
	})
	if !slices.Equal(seen, []int64{10, 11}) {
		t.Fatalf("the commit of 12 covered records %v, want [10 11]", seen)
	}
	tr.done(14)
	if off, moved := tr.toCommit(); moved {
		t.Fatalf("14 done before 13: commit %d", off)
	}
	tr.done(13)
	if off, _ := tr.toCommit(); off != 15 {
		t.Fatalf("commit %d, want 15", off)
	}
	tr.fetch(20, at(20))
	if tr.pending() != 1 {
		t.Fatalf("pending %d", tr.pending())
	}
	// Many records: the slice is compacted without losing state.
	tr.done(20)
	for o := int64(21); o < 5000; o++ {
		tr.fetch(o, at(o))
	}
	for o := int64(4999); o >= 21; o-- {
		tr.done(o)
	}
	if off, _ := tr.toCommit(); off != 5000 || tr.pending() != 0 {
		t.Fatalf("after 5000: %d, pending %d", off, tr.pending())
	}
}

func TestTrackerWithoutCommittedOffset(t *testing.T) {
	tr := newTracker(-2) // kafka.FirstOffset: nothing committed
	if _, moved := tr.toCommit(); moved {
		t.Fatal("a commit before any record")
	}
	tr.fetch(40, at(40)) // the log starts at 40
	if _, moved := tr.toCommit(); moved {
		t.Fatal("a commit before the first record is done")
	}
	tr.done(40)
	if off, moved := tr.toCommit(); !moved || off != 41 {
		t.Fatalf("commit %d %v, want 41", off, moved)
	}
}
