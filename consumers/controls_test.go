package consumers_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/invoke"
)

var ok = invoke.Result{Status: invoke.StatusOK}

func failed(errType string) invoke.Result {
	return invoke.Result{Status: invoke.StatusFunctionError, ErrorType: errType, Payload: []byte(`{"errorMessage":"boom"}`)}
}

// offsetsOf returns the offsets of each call's records.
func offsetsOf(calls []call) [][]int64 {
	out := make([][]int64, len(calls))
	for i, c := range calls {
		for _, r := range c.records {
			out[i] = append(out[i], r.Offset)
		}
	}
	return out
}

// keyed returns n records for partition 0 over keys k0..k(keys-1), each
// with its per-key sequence number as value.
func keyed(topic string, n, keys int) []kafka.Message {
	out := make([]kafka.Message, n)
	seq := make([]int, keys)
	for i := range out {
		k := i % keys
		out[i] = kafka.Message{Topic: topic, Partition: 0, Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "%d", seq[k])}
		seq[k]++
	}
	return out
}

// Key ordering runs different keys at once, up to MaxConcurrency, and
// never reorders one key's records.
func TestKeyOrderingParallelAndInOrder(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("keyed", 1)
	c.ProduceToPartitions(keyed("keyed", 400, 40)...)
	b := binding("keyed", "keyed")
	b.Ordering, b.MaxConcurrency, b.BatchSize = settings.OrderKey, 8, 5
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	last := map[string]int{}
	var order []string
	inv := &recInvoker{t: t, behave: func(_ int, recs []events.KafkaRecord) (invoke.Result, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		mu.Lock()
		for _, r := range recs {
			k := string(mustB64(t, r.Key))
			var seq int
			fmt.Sscan(value(r), &seq)
			if prev, seen := last[k]; seen && seq != prev+1 || !seen && seq != 0 {
				order = append(order, fmt.Sprintf("key %s: %d after %d", k, seq, prev))
			}
			last[k] = seq
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a handler that takes a while, so that batches overlap
		return ok, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 30*time.Second)
	if len(order) > 0 {
		t.Fatalf("per-key order broken: %v", order[:min(5, len(order))])
	}
	if p := peak.Load(); p < 2 || p > 8 {
		t.Fatalf("peak concurrency %d, want 2..8 (MaxConcurrency 8)", p)
	}
	if n := len(recordsOf(inv.snapshot())); n != 400 {
		t.Fatalf("invoked %d records, want 400 once each", n)
	}
}

// A partial batch response retries only the failed records and those after
// them in their order group.
func TestPartialBatchResponse(t *testing.T) {
	for _, tc := range []struct {
		ordering string
		want     []int64 // the second call's offsets
	}{
		{settings.OrderPartition, []int64{3, 4, 5, 6, 7, 8, 9}},
		{settings.OrderKey, []int64{3, 5, 7, 9}}, // key k1 holds the odd offsets
		{settings.OrderNone, []int64{3}},
	} {
		t.Run(tc.ordering, func(t *testing.T) {
			c := startCluster(t)
			c.CreateTopic("pb", 1)
			msgs := msgsTo("pb", 0, 10, "p", 5)
			for i := range msgs {
				msgs[i].Key = fmt.Appendf(nil, "k%d", i%2)
			}
			c.ProduceToPartitions(msgs...)
			b := binding("pb", "pb")
			b.Ordering, b.MaxConcurrency, b.ReportBatchItemFailures = tc.ordering, 1, true
			b.BatchWindow = wholeBatch
			inv := &recInvoker{t: t, behave: func(n int, recs []events.KafkaRecord) (invoke.Result, error) {
				if n == 0 {
					return invoke.Result{Status: invoke.StatusOK,
						Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":{"partition":"pb-0","offset":3}}]}`)}, nil
				}
				return invoke.Result{Status: invoke.StatusOK, Payload: []byte(`{"batchItemFailures":[]}`)}, nil
			}}
			m := startManager(t, c, inv, []consumers.Binding{b})
			waitCommitted(t, m.Manager, b, 20*time.Second)
			calls := offsetsOf(inv.snapshot())
			if len(calls) != 2 || len(calls[0]) != 10 || !slices.Equal(calls[1], tc.want) {
				t.Fatalf("calls %v, want all 10 then %v", calls, tc.want)
			}
			if st := m.Stats()["pb"]; st.FunctionErrors != 1 || st.DLQRecords != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// wholeBatch is a batch window long enough that records produced before a
// test's consumer starts make one batch (without a window, a batch is what
// one fetch returned, which may be fewer).
const wholeBatch = 500 * time.Millisecond

// A malformed partial batch response fails the whole batch; retries
// exhausted, every record is dead-lettered with the reason.
func TestInvalidBatchResponseFailsTheBatch(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("bad", 1)
	c.ProduceToPartitions(msgsTo("bad", 0, 3, "b", 5)...)
	b := binding("bad", "bad")
	b.ReportBatchItemFailures, b.MaxRetryAttempts = true, 1
	b.BatchWindow = wholeBatch
	inv := &recInvoker{t: t, behave: func(int, []events.KafkaRecord) (invoke.Result, error) {
		return invoke.Result{Status: invoke.StatusOK, Payload: []byte(`{"batchItemFailures":[{"itemIdentifier":{"partition":"bad-0","offset":99}}]}`)}, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	calls := offsetsOf(inv.snapshot())
	if len(calls) != 2 || len(calls[0]) != 3 || len(calls[1]) != 3 {
		t.Fatalf("calls %v, want the whole batch twice", calls)
	}
	dlq := c.ReadAll("bad.dlq")
	if len(dlq) != 3 || header(dlq[0].Headers, consumers.HeaderErrorType) != consumers.ErrorTypeBadBatchResponse ||
		!strings.Contains(header(dlq[0].Headers, consumers.HeaderReason), "offset 99 is not in the batch") {
		t.Fatalf("dead-letter records %d, headers %v", len(dlq), dlq[0].Headers)
	}
}

// Bisect on error halves a failing batch down to the bad record: only it
// is dead-lettered, every other record is handled.
func TestBisectOnError(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("bis", 1)
	c.ProduceToPartitions(msgsTo("bis", 0, 8, "b", 5)...)
	b := binding("bis", "bis")
	b.BisectOnError, b.MaxRetryAttempts = true, 0
	b.BatchWindow = wholeBatch
	inv := &recInvoker{t: t, behave: func(_ int, recs []events.KafkaRecord) (invoke.Result, error) {
		for _, r := range recs {
			if r.Offset == 5 {
				return failed("Bad"), nil
			}
		}
		return ok, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	calls := offsetsOf(inv.snapshot())
	// [0..7] fails; [0..3] ok; [4..7] fails; [4 5] fails; [4] ok; [5] fails: dead-lettered; [6 7] ok.
	want := "[[0 1 2 3 4 5 6 7] [0 1 2 3] [4 5 6 7] [4 5] [4] [5] [6 7]]"
	if fmt.Sprint(calls) != want {
		t.Fatalf("calls %v, want %s", calls, want)
	}
	dlq := c.ReadAll("bis.dlq")
	if len(dlq) != 1 || header(dlq[0].Headers, consumers.HeaderOffset) != "5" {
		t.Fatalf("dead-lettered %d records: %v", len(dlq), dlq)
	}
}

// Records older than MaxRecordAge are dead-lettered without an invocation;
// with max_retry_attempts -1 a failing record is retried until it is that
// old, while the rest of the partition waits behind it.
func TestMaxRecordAge(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("aged", 1)
	old := msgsTo("aged", 0, 2, "old", 5)
	for i := range old {
		old[i].Time = time.Now().Add(-2 * time.Hour)
	}
	c.ProduceToPartitions(old...)
	edge := msgsTo("aged", 0, 2, "edge", 5) // offset 2 is almost 60 s old, offset 3 new
	edge[0].Time = time.Now().Add(-59 * time.Second)
	c.ProduceToPartitions(edge...)
	b := binding("aged", "aged")
	b.MaxRecordAge, b.MaxRetryAttempts, b.BatchSize = time.Minute, -1, 1
	inv := &recInvoker{t: t, behave: func(_ int, recs []events.KafkaRecord) (invoke.Result, error) {
		if strings.HasPrefix(value(recs[0]), "edge-0-0") {
			return failed("AlwaysFails"), nil
		}
		return ok, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 30*time.Second)
	for _, r := range recordsOf(inv.snapshot()) {
		if strings.HasPrefix(value(r), "old-") {
			t.Fatalf("record %d older than the max age was invoked", r.Offset)
		}
	}
	dlq := c.ReadAll("aged.dlq")
	var got []string
	for _, d := range dlq {
		got = append(got, header(d.Headers, consumers.HeaderOffset)+"/"+header(d.Headers, consumers.HeaderErrorType))
	}
	slices.Sort(got) // the dead-letter topic's partitions are the key's
	if fmt.Sprint(got) != "[0/MaxRecordAgeExceeded 1/MaxRecordAgeExceeded 2/MaxRecordAgeExceeded]" {
		t.Fatalf("dead-lettered %v", got)
	}
	if st := m.Stats()["aged"]; st.AgeDropped != 3 || st.FunctionErrors < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Filters commit non-matching records without invoking them.
func TestFilters(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("flt", 1)
	var msgs []kafka.Message
	for i := range 12 {
		kind := []string{"order", "refund", "ping"}[i%3]
		msgs = append(msgs, kafka.Message{Topic: "flt", Partition: 0, Key: fmt.Appendf(nil, "user-%d", i),
			Value: fmt.Appendf(nil, `{"kind":%q,"amount":%d}`, kind, i*10)})
	}
	msgs = append(msgs, kafka.Message{Topic: "flt", Partition: 0, Value: []byte("not json"),
		Headers: []kafka.Header{{Key: "source", Value: []byte("batch")}}})
	c.ProduceToPartitions(msgs...)
	b := binding("flt", "flt")
	b.Filters = []string{
		`{"value":{"kind":["order"],"amount":[{"numeric":[">",20]}]}}`,
		`{"headers":{"source":["batch"]}}`,
	}
	inv := &recInvoker{t: t}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	var got []int64
	for _, r := range recordsOf(inv.snapshot()) {
		got = append(got, r.Offset)
	}
	// Orders are offsets 0,3,6,9 (amounts 0,30,60,90): 3, 6, 9 pass; 12 by its header.
	if fmt.Sprint(got) != "[3 6 9 12]" {
		t.Fatalf("invoked %v, want [3 6 9 12]", got)
	}
	if st := m.Stats()["flt"]; st.Filtered != 9 || st.RecordsIn != 13 {
		t.Fatalf("stats %+v", st)
	}
}

// A response too large for the result topic is a function error: retried,
// then dead-lettered, never stuck.
func TestOversizedResponseIsAFunctionError(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("big-resp", 1)
	c.ProduceToPartitions(msgsTo("big-resp", 0, 2, "r", 5)...)
	b := binding("big-resp", "big-resp")
	b.ResultTopic, b.BatchSize, b.MaxRetryAttempts = "big-resp-out", 1, 1
	inv := &recInvoker{t: t, behave: func(_ int, recs []events.KafkaRecord) (invoke.Result, error) {
		if recs[0].Offset == 0 {
			return invoke.Result{Status: invoke.StatusOK, Payload: make([]byte, 3<<20)}, nil
		}
		return invoke.Result{Status: invoke.StatusOK, Payload: []byte(`"small"`)}, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	dlq := c.ReadAll("big-resp.dlq")
	if len(dlq) != 1 || header(dlq[0].Headers, consumers.HeaderErrorType) != consumers.ErrorTypeResponseTooLarge ||
		header(dlq[0].Headers, consumers.HeaderAttempts) != "2" {
		t.Fatalf("dead-lettered %d records: %v", len(dlq), dlq)
	}
	if out := c.ReadAll("big-resp-out"); len(out) != 1 || string(out[0].Value) != `"small"` {
		t.Fatalf("result topic holds %d records", len(out))
	}
}
