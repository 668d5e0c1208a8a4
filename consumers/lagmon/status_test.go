package lagmon

import (
	"strings"
	"testing"
	"time"
)

// series builds a window from (committed, end) pairs one second apart,
// with members in the group.
func series(members int, pairs ...[2]int64) []Sample {
	t0 := time.Unix(1_700_000_000, 0)
	out := make([]Sample, len(pairs))
	for i, p := range pairs {
		o := Offsets{Partition: 0, Committed: p[0], End: p[1]}
		o.Lag = max(0, o.End-o.Oldest())
		out[i] = Sample{At: t0.Add(time.Duration(i) * time.Second), Offsets: o, Members: members}
	}
	return out
}

func TestEvaluate(t *testing.T) {
	for _, c := range []struct {
		name   string
		window []Sample
		want   Status
		reason string
	}{
		{"keeps up", series(1, [2]int64{10, 10}, [2]int64{20, 25}, [2]int64{30, 30}), OK, "no lag"},
		{"behind but catching up", series(1, [2]int64{10, 50}, [2]int64{30, 60}, [2]int64{55, 70}), OK, "does not grow"},
		{"falls behind", series(1, [2]int64{10, 50}, [2]int64{20, 70}, [2]int64{30, 90}), WARN, "lag grew from 40 to 60"},
		{"lag dipped once: not a steady fall", series(1, [2]int64{10, 50}, [2]int64{40, 70}, [2]int64{45, 90}), OK, ""},
		{"stuck", series(1, [2]int64{10, 50}, [2]int64{10, 60}, [2]int64{10, 70}), STALL, "stuck at 10 for 2s"},
		{"stuck at zero lag is fine", series(1, [2]int64{10, 10}, [2]int64{10, 10}, [2]int64{10, 10}), OK, "no lag"},
		{"no consumer", series(0, [2]int64{10, 50}, [2]int64{10, 50}, [2]int64{10, 60}), STOP, "no consumer"},
		{"no consumer, nothing to do", series(0, [2]int64{10, 10}, [2]int64{10, 10}), OK, "no lag"},
		{"rewound", series(1, [2]int64{50, 60}, [2]int64{5, 60}, [2]int64{20, 60}), REWIND, "from 50 to 5"},
		{"too few samples", series(1, [2]int64{10, 50}, [2]int64{10, 60}), OK, "not enough"},
		{"a zero lag in the window", series(1, [2]int64{10, 10}, [2]int64{10, 60}, [2]int64{10, 70}), OK, "zero within"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, why := Evaluate(c.window, 3)
			if got != c.want || !strings.Contains(why, c.reason) {
				t.Fatalf("Evaluate = %s (%s), want %s (%q)", got, why, c.want, c.reason)
			}
		})
	}
	// Retention removed uncommitted records; a failed read.
	w := series(1, [2]int64{10, 50}, [2]int64{10, 60}, [2]int64{10, 70})
	w[2].Start = 30
	if got, why := Evaluate(w, 3); got != ERR || !strings.Contains(why, "offsets 10 to 29") {
		t.Fatalf("expired: %s (%s)", got, why)
	}
	w[2].Err = "topic gone"
	if got, _ := Evaluate(w, 3); got != ERR {
		t.Fatalf("failed read: %s", got)
	}
}

func TestRates(t *testing.T) {
	consume, produce, drain := rates(series(1, [2]int64{0, 100}, [2]int64{30, 110}, [2]int64{60, 120}))
	if consume != 30 || produce != 10 || drain != 3 { // 60 behind, shrinking 20/s
		t.Fatalf("rates = %v %v %v, want 30 10 3", consume, produce, drain)
	}
	if _, _, drain := rates(series(1, [2]int64{0, 100}, [2]int64{10, 120})); drain != -1 {
		t.Fatalf("growing lag drains in %v, want -1", drain)
	}
	if _, _, drain := rates(series(1, [2]int64{100, 100})); drain != 0 {
		t.Fatalf("no lag drains in %v, want 0", drain)
	}
}

func TestWorse(t *testing.T) {
	if OK.Worse(STALL) != STALL || ERR.Worse(WARN) != ERR || REWIND.Worse(OK) != REWIND {
		t.Fatal("severity order")
	}
}
