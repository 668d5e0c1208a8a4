package lagmon

import (
	"fmt"
	"time"
)

// Status is the verdict on a partition or a binding over the window.
type Status string

// The statuses, from best to worst (a binding takes its worst partition's).
const (
	// OK: the group keeps up (no lag now), or lag is not growing while
	// offsets move.
	OK Status = "OK"
	// REWIND: the committed offset went back within the window (a rewind,
	// a redrive, or a commit from a replica that lost the partition).
	REWIND Status = "REWIND"
	// WARN: offsets move but the lag grew over the window without ever
	// shrinking: the group falls behind.
	WARN Status = "WARN"
	// STALL: the group has members, there is lag, and the committed offset
	// did not move over the whole window (a stuck record, a function that
	// hangs, retries without end).
	STALL Status = "STALL"
	// STOP: there is lag and the group has no members: the binding is
	// disabled or no emberd runs it.
	STOP Status = "STOP"
	// ERR: the partition could not be evaluated (the topic is gone, the
	// broker does not answer), or retention removed records the group had
	// not committed.
	ERR Status = "ERR"
)

// Statuses lists every status, best first.
var Statuses = []Status{OK, REWIND, WARN, STALL, STOP, ERR}

// severity orders statuses from best (0) to worst.
func (s Status) severity() int {
	for i, x := range Statuses {
		if x == s {
			return i
		}
	}
	return len(Statuses)
}

// Worse returns the worse of s and o.
func (s Status) Worse(o Status) Status {
	if o.severity() > s.severity() {
		return o
	}
	return s
}

// Sample is one observation of a partition.
type Sample struct {
	At time.Time
	Offsets
	// LagSeconds is the age of the oldest record not committed at At (0
	// without lag).
	LagSeconds float64
	// Members is how many members the group had at At.
	Members int
	// Err is why the partition could not be read at At ("" when it was).
	Err string
}

// Evaluate returns the status of a partition from its samples in the
// window, oldest first, and why. The rules, applied in this order to the
// window's samples:
//
//  1. the newest sample failed, or retention removed uncommitted records: ERR;
//  2. the committed offset went back between two samples: REWIND;
//  3. no lag in the newest sample: OK;
//  4. the group has no members in the newest sample: STOP;
//  5. fewer than minSamples samples: OK (not enough data for a trend);
//  6. the committed offset never moved and every sample has lag: STALL;
//  7. the lag never shrank between two samples and grew overall: WARN;
//  8. otherwise OK.
func Evaluate(window []Sample, minSamples int) (Status, string) {
	if len(window) == 0 {
		return OK, "no samples yet"
	}
	last := window[len(window)-1]
	if last.Err != "" {
		return ERR, last.Err
	}
	if last.Expired() {
		return ERR, fmt.Sprintf("retention removed offsets %d to %d before the group committed them", last.Committed, last.Start-1)
	}
	for i := 1; i < len(window); i++ {
		a, b := window[i-1], window[i]
		if a.Err == "" && b.Err == "" && a.Committed >= 0 && b.Committed >= 0 && b.Committed < a.Committed {
			return REWIND, fmt.Sprintf("committed offset went back from %d to %d", a.Committed, b.Committed)
		}
	}
	if last.Lag == 0 {
		return OK, "no lag"
	}
	if last.Members == 0 {
		return STOP, fmt.Sprintf("%d records behind and no consumer in the group", last.Lag)
	}
	if len(window) < minSamples {
		return OK, "not enough samples for a trend"
	}
	first := window[0]
	moved, shrank := false, false
	for i := 1; i < len(window); i++ {
		a, b := window[i-1], window[i]
		if b.Committed != a.Committed {
			moved = true
		}
		if b.Lag < a.Lag {
			shrank = true
		}
		if a.Lag == 0 {
			return OK, "the lag was zero within the window"
		}
	}
	span := last.At.Sub(first.At).Round(time.Second)
	if !moved {
		return STALL, fmt.Sprintf("committed offset stuck at %d for %s with %d records behind", last.Committed, span, last.Lag)
	}
	if !shrank && last.Lag > first.Lag {
		return WARN, fmt.Sprintf("lag grew from %d to %d records in %s", first.Lag, last.Lag, span)
	}
	return OK, "offsets move and the lag does not grow"
}

// rates returns the consume and produce rates in records per second over
// the window, and the estimated seconds to drain the newest sample's lag
// at those rates: 0 without lag, -1 when the lag does not shrink.
func rates(window []Sample) (consume, produce, drain float64) {
	if len(window) == 0 {
		return 0, 0, 0
	}
	first, last := window[0], window[len(window)-1]
	if dt := last.At.Sub(first.At).Seconds(); dt > 0 && first.Err == "" && last.Err == "" {
		consume = float64(last.Oldest()-first.Oldest()) / dt
		produce = float64(last.End-first.End) / dt
		consume = max(consume, 0) // a rewind is not negative consumption
	}
	switch net := consume - produce; {
	case last.Lag == 0:
		drain = 0
	case net > 0:
		drain = float64(last.Lag) / net
	default:
		drain = -1
	}
	return consume, produce, drain
}
