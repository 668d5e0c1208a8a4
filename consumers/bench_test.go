package consumers_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/invoke"
)

// countInvoker is a no-op Invoker that only counts calls and payload bytes,
// so the benchmark measures the consumer side: fetch, batch, encode, commit.
type countInvoker struct {
	batches atomic.Int64
	bytes   atomic.Int64
}

func (c *countInvoker) Invoke(_ context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	c.batches.Add(1)
	c.bytes.Add(int64(len(inv.Payload)))
	return invoke.Result{Status: invoke.StatusOK}, nil
}

// BenchmarkConsumeToInvoke measures records/s from a pre-filled 4-partition
// topic to a no-op Invoker (batch size 100), until every offset is committed.
func BenchmarkConsumeToInvoke(b *testing.B) {
	const perPartition = 5000
	c := startCluster(b)
	c.CreateTopic("bench", 4)
	for p := 0; p < 4; p++ {
		c.ProduceToPartitions(msgsTo("bench", p, perPartition, "b", 100)...)
	}
	b.ResetTimer()
	var records int64
	for i := 0; i < b.N; i++ {
		inv := &countInvoker{}
		bd := binding("bench", "bench")
		bd.GroupID = "bench-" + time.Now().Format("150405.000000000") // a fresh group reads from the start
		m := startManager(b, c, inv, []consumers.Binding{bd})
		waitFor(b, 60*time.Second, "all records consumed", func() bool {
			return m.Stats()["bench"].RecordsIn >= 4*perPartition && m.Stats()["bench"].InFlight == 0
		})
		m.stop(b)
		records += 4 * perPartition
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}
