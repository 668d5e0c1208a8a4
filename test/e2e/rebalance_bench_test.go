package e2e

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// committed returns the binding's committed offset per partition.
func (s *stack) committed(binding string) map[int]int64 {
	st, err := s.client.Status(s.ctx())
	if err != nil {
		return nil
	}
	out := map[int]int64{}
	for _, b := range st.Bindings {
		if b.ID == binding {
			for _, p := range b.LagPartitions() {
				out[p.Partition] = p.Committed
			}
		}
	}
	return out
}

// recovery waits until every partition's committed offset moved past
// before (records keep coming to all of them) and returns how long it took
// from t0.
func recovery(b *testing.B, s *stack, binding string, before map[int]int64, t0 time.Time) time.Duration {
	b.Helper()
	for {
		now := s.committed(binding)
		moved := len(now) == len(before)
		for p, off := range before {
			if now[p] <= off {
				moved = false
			}
		}
		if moved {
			return time.Since(t0)
		}
		if time.Since(t0) > 2*time.Minute {
			b.Fatalf("partitions not consumed again 2 min after the replica left: %v, were %v\n%s", now, before, s.log())
		}
		time.Sleep(50 * time.Millisecond) // polling the survivors' commits
	}
}

// BenchmarkRebalance: three replicas share a key-ordered binding of 8
// partitions under a steady stream. One replica stops (SIGTERM), then one
// is SIGKILLed: the time until every partition is consumed again, and the
// records delivered twice. The session timeout (6 s here) is the floor of
// the SIGKILL figure: the coordinator notices a dead member only then.
func BenchmarkRebalance(b *testing.B) {
	r := newReplicaSet(b, "m128=3")
	a := r.add()
	r2 := r.add()
	r3 := r.add()
	a.deploy("echo", "kafka-echo", wire.FunctionConfig{})
	a.createTopic("rb", 8)
	if _, err := a.client.PutBinding(a.ctx(), wire.Binding{ID: "rb", Function: "echo", Topic: "rb",
		StartingPosition: "trim_horizon", Ordering: "key", MaxConcurrency: 4, BatchSize: 20,
		ResultTopic: "rb.results"}); err != nil {
		b.Fatal(err)
	}
	const keys, perKey = 200, 150
	var sent atomic.Int64
	produced := make(chan error, 1)
	go func() { produced <- produceKeyed(r.broker, topic("rb"), keys, perKey, 200*time.Millisecond, &sent) }()
	for sent.Load() < keys*perKey/5 {
		time.Sleep(20 * time.Millisecond) // polling the producer's progress
	}
	b.ResetTimer()
	before := a.committed("rb")
	t0 := time.Now()
	r3.stop()
	graceful := recovery(b, a, "rb", before, t0)
	before = a.committed("rb")
	t0 = time.Now()
	r2.kill()
	killed := recovery(b, a, "rb", before, t0)
	b.StopTimer()
	if err := <-produced; err != nil {
		b.Fatal(err)
	}
	a.waitNoLag("rb", keys*perKey, 3*time.Minute)
	dups := checkKeyed(b, a.readTopic("rb.results"), keys, perKey)
	report(b, "rebalance: partitions consumed again after SIGTERM", ms(graceful), "ms")
	report(b, "rebalance: partitions consumed again after SIGKILL", ms(killed), "ms")
	report(b, "rebalance: floor of SIGKILL (session timeout)", ms(6*time.Second), "ms")
	report(b, "rebalance: records delivered twice (2 rebalances)", float64(dups), "records")
}
