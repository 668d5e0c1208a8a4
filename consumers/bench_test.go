package consumers_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/settings"
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

// sleepInvoker is a handler that takes d per batch.
type sleepInvoker struct{ d time.Duration }

func (s sleepInvoker) Invoke(ctx context.Context, _ *invoke.Invocation) (invoke.Result, error) {
	select {
	case <-time.After(s.d):
		return invoke.Result{Status: invoke.StatusOK}, nil
	case <-ctx.Done():
		return invoke.Result{}, ctx.Err()
	}
}

// BenchmarkOrderingKeyVsPartition: one partition, 1,000 distinct keys, a
// 20 ms handler, batches of 10: records/s with ordering by key
// (max_concurrency 20) against ordering by partition, and their ratio.
func BenchmarkOrderingKeyVsPartition(b *testing.B) {
	const records, keys = 2000, 1000
	c := startCluster(b)
	c.CreateTopic("order", 1)
	msgs := msgsTo("order", 0, records, "o", 50)
	for i := range msgs {
		msgs[i].Key = []byte(fmt.Sprintf("key-%d", i%keys))
	}
	c.ProduceToPartitions(msgs...)
	rate := func(ordering string) float64 {
		bd := binding("order", "order")
		bd.GroupID = "order-" + ordering + time.Now().Format("150405.000000000") // from the start
		bd.Ordering, bd.MaxConcurrency, bd.BatchSize = ordering, 20, 10
		start := time.Now()
		m := startManager(b, c, sleepInvoker{20 * time.Millisecond}, []consumers.Binding{bd})
		waitCommitted(b, m.Manager, bd, 5*time.Minute)
		elapsed := time.Since(start)
		m.stop(b)
		return records / elapsed.Seconds()
	}
	b.ResetTimer()
	var part, key float64
	for i := 0; i < b.N; i++ {
		part += rate(settings.OrderPartition)
		key += rate(settings.OrderKey)
	}
	n := float64(b.N)
	b.ReportMetric(part/n, "partition-records/s")
	b.ReportMetric(key/n, "key-records/s")
	b.ReportMetric(key/part, "key/partition")
}
