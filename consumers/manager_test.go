package consumers_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/kafkatest"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/invoke"
)

func binding(id, topic string) consumers.Binding {
	return consumers.Binding{
		ID: id, Tenant: "t1", Function: "fn", Topic: topic,
		Settings: settings.Settings{StartingPosition: settings.TrimHorizon, MaxRetryAttempts: 2},
	}
}

// gate makes the first invocation wait until open is closed, so that later
// batches are formed from a full queue.
func gate(open <-chan struct{}) func(int, []events.KafkaRecord) (invoke.Result, error) {
	return func(n int, _ []events.KafkaRecord) (invoke.Result, error) {
		if n == 0 {
			<-open
		}
		return invoke.Result{Status: invoke.StatusOK}, nil
	}
}

func TestBatchSizeAndPayloadLimit(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("sized", 1)
	c.CreateTopic("limited", 1)
	c.ProduceToPartitions(msgsTo("sized", 0, 250, "s", 50)...)
	c.ProduceToPartitions(msgsTo("limited", 0, 40, "l", 1000)...)

	sizedB := binding("sized", "sized")
	sizedB.BatchSize = 50
	limitedB := binding("limited", "limited")
	limitedB.MaxBatchBytes = 4096 // about two 1000-byte records per event

	openSized, openLimited := make(chan struct{}), make(chan struct{})
	sizedInv := &recInvoker{t: t, behave: gate(openSized)}
	limitedInv := &recInvoker{t: t, behave: gate(openLimited)}
	ms := startManager(t, c, sizedInv, []consumers.Binding{sizedB})
	ml := startManager(t, c, limitedInv, []consumers.Binding{limitedB})
	waitFor(t, 20*time.Second, "all records fetched", func() bool {
		return ms.Stats()["sized"].RecordsIn == 250 && ml.Stats()["limited"].RecordsIn == 40
	})
	close(openSized)
	close(openLimited)
	waitCommitted(t, ms.Manager, sizedB, 20*time.Second)
	waitCommitted(t, ml.Manager, limitedB, 20*time.Second)

	calls := sizedInv.snapshot()
	total := 0
	for i, cl := range calls {
		n := len(cl.records)
		total += n
		if n > 50 {
			t.Fatalf("batch %d has %d records, BatchSize is 50", i, n)
		}
		if i > 0 && i < len(calls)-1 && n != 50 {
			t.Errorf("batch %d formed from a full queue has %d records, want 50", i, n)
		}
		if cl.inv.Source != "sized" || cl.inv.Tenant != "t1" || cl.inv.Function != "fn" || cl.inv.FirstEventAt.IsZero() {
			t.Errorf("invocation fields: %+v", cl.inv)
		}
	}
	if total != 250 {
		t.Fatalf("invoked %d records, want 250", total)
	}

	lcalls := limitedInv.snapshot()
	total = 0
	full := 0
	for i, cl := range lcalls {
		if len(cl.inv.Payload) > 4096 {
			t.Fatalf("batch %d payload %d bytes over the 4096 limit", i, len(cl.inv.Payload))
		}
		if len(cl.records) == 2 {
			full++
		}
		if len(cl.records) > 2 {
			t.Fatalf("batch %d has %d records of ~1.5 KiB each in a 4 KiB event", i, len(cl.records))
		}
		total += len(cl.records)
	}
	if total != 40 || full < 18 {
		t.Fatalf("limited: %d records in %d batches (%d with two records)", total, len(lcalls), full)
	}
	if st := ml.Stats()["limited"]; st.DLQRecords != 0 || st.InFlight != 0 {
		t.Fatalf("limited stats: %+v", st)
	}
}

func TestManyRecordsInOrderAndCommitted(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("orders", 4)
	inv := &recInvoker{t: t}
	b := binding("orders", "orders")
	reg := prometheus.NewRegistry()
	m := startManager(t, c, inv, []consumers.Binding{b}, consumers.WithRegistry(reg))
	// Produce while the consumer runs, 500 per partition.
	for p := 0; p < 4; p++ {
		c.ProduceToPartitions(msgsTo("orders", p, 500, "o", 20)...)
	}
	lag := waitCommitted(t, m.Manager, b, 30*time.Second)
	if len(lag) != 4 {
		t.Fatalf("lag has %d partitions", len(lag))
	}
	for _, p := range lag {
		if p.End != 500 || p.Committed != 500 {
			t.Fatalf("partition %d: end %d committed %d", p.Partition, p.End, p.Committed)
		}
	}
	next := map[int64]int64{}
	seen := 0
	for _, r := range recordsOf(inv.snapshot()) {
		if r.Offset < next[r.Partition] {
			continue // a redelivery; none is expected without rebalance
		}
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: got offset %d, want %d (out of order or lost)", r.Partition, r.Offset, next[r.Partition])
		}
		if want := fmt.Sprintf("o-%d-%d|", r.Partition, r.Offset); !strings.HasPrefix(value(r), want) {
			t.Fatalf("record %d/%d value %q, want prefix %q", r.Partition, r.Offset, value(r), want)
		}
		next[r.Partition]++
		seen++
	}
	if seen != 2000 {
		t.Fatalf("saw %d distinct records, want 2000", seen)
	}
	st := m.Stats()["orders"]
	if st.RecordsIn < 2000 || st.FunctionErrors != 0 || st.PlatformErrors != 0 || st.DLQRecords != 0 || st.InFlight != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if got := counterSum(t, reg, "ember_consumer_records_total"); got < 2000 {
		t.Fatalf("records_total %v", got)
	}
}

// counterSum sums the named counter family over its labels.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestFunctionErrorRetriedThenDeadLettered(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("pay", 1)
	c.ProduceToPartitions(msgsTo("pay", 0, 3, "p", 10)...)
	b := binding("pay", "pay")
	b.BatchSize = 1
	inv := &recInvoker{t: t, behave: func(n int, recs []events.KafkaRecord) (invoke.Result, error) {
		if recs[0].Offset == 1 {
			return invoke.Result{Status: invoke.StatusFunctionError, ErrorType: "Runtime.HandlerError", Payload: []byte(`{"errorMessage":"boom"}`)}, nil
		}
		return invoke.Result{Status: invoke.StatusOK}, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)

	attempts := map[int64]int{}
	for _, r := range recordsOf(inv.snapshot()) {
		attempts[r.Offset]++
	}
	if attempts[0] != 1 || attempts[1] != 3 || attempts[2] != 1 {
		t.Fatalf("attempts per offset %v, want 0:1 1:3 2:1", attempts)
	}
	dlq := c.ReadAll("pay.dlq")
	if len(dlq) != 1 {
		t.Fatalf("dead-letter topic has %d records, want 1", len(dlq))
	}
	d := dlq[0]
	checks := map[string]string{
		consumers.HeaderAttempts: "3", consumers.HeaderStatus: "function_error",
		consumers.HeaderErrorType: "Runtime.HandlerError", consumers.HeaderBinding: "pay",
		consumers.HeaderTopic: "pay", consumers.HeaderPartition: "0", consumers.HeaderOffset: "1",
		"seq": "1", // the record's own header is kept
	}
	for k, want := range checks {
		if got := header(d.Headers, k); got != want {
			t.Errorf("dlq header %s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(string(d.Value), "p-0-1|") || string(d.Key) != "k1" {
		t.Errorf("dlq record key %q value %q", d.Key, d.Value)
	}
	if r := header(d.Headers, consumers.HeaderReason); !strings.Contains(r, "failed 3 attempts (max retry attempts 2)") {
		t.Errorf("dlq reason %q", r)
	}
	st := m.Stats()["pay"]
	if st.FunctionErrors != 3 || st.DLQRecords != 1 || st.Invocations != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPlatformErrorRetriedNotCommitted(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("plat", 1)
	c.ProduceToPartitions(msgsTo("plat", 0, 5, "x", 10)...)
	b := binding("plat", "plat")
	b.MaxRetryAttempts = 0 // a platform failure must not use up function attempts
	checked := make(chan struct{})
	inFailure := make(chan struct{})
	var calls atomic.Int32
	inv := &recInvoker{t: t, behave: func(n int, _ []events.KafkaRecord) (invoke.Result, error) {
		calls.Add(1)
		switch {
		case n == 3:
			close(inFailure)
			<-checked // the test inspects committed offsets while we are failing
			return invoke.Result{}, errors.New("no capacity")
		case n < 3:
			return invoke.Result{}, errors.New("no capacity")
		}
		return invoke.Result{Status: invoke.StatusOK}, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	<-inFailure
	// Several commit intervals pass while failing: nothing may be committed.
	time.Sleep(200 * time.Millisecond) // lets the 50ms committer run several times; the assertion is that it did nothing
	lag, err := m.Lag(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if lag[0].Committed != -1 || lag[0].Lag != 5 {
		t.Fatalf("committed during platform failures: %+v", lag)
	}
	close(checked)
	waitCommitted(t, m.Manager, b, 20*time.Second)
	st := m.Stats()["plat"]
	if st.PlatformErrors != 4 || st.DLQRecords != 0 || st.FunctionErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if dlq, err := kafkatest.ReadAll(c.Brokers, "plat.dlq"); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("dead-letter topic created on platform failures (it is created on first use): %d records, %v", len(dlq), err)
	}
	// The 4 failed calls all carried the first batch again.
	calls5 := inv.snapshot()
	for i := 0; i < 5; i++ {
		if len(calls5[i].records) == 0 || calls5[i].records[0].Offset != 0 {
			t.Fatalf("call %d did not retry the first batch: %+v", i, calls5[i].records)
		}
	}
}

func TestOversizedRecordDeadLettered(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("big", 1)
	small := msgsTo("big", 0, 3, "b", 10)
	small[1].Value = make([]byte, 10_000)
	c.ProduceToPartitions(small...)
	b := binding("big", "big")
	b.MaxBatchBytes = 4096
	inv := &recInvoker{t: t}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	var offsets []int64
	for _, r := range recordsOf(inv.snapshot()) {
		offsets = append(offsets, r.Offset)
	}
	if fmt.Sprint(offsets) != "[0 2]" {
		t.Fatalf("invoked offsets %v, want [0 2]", offsets)
	}
	dlq := c.ReadAll("big.dlq")
	if len(dlq) != 1 || len(dlq[0].Value) != 10_000 {
		t.Fatalf("dead-letter topic: %d records", len(dlq))
	}
	h := dlq[0].Headers
	if header(h, consumers.HeaderErrorType) != consumers.ErrorTypePayloadTooLarge ||
		header(h, consumers.HeaderStatus) != consumers.StatusNotInvoked ||
		header(h, consumers.HeaderOffset) != "1" || header(h, consumers.HeaderAttempts) != "0" ||
		!strings.Contains(header(h, consumers.HeaderReason), "max batch bytes of 4096") {
		t.Fatalf("dlq headers %v", h)
	}
}

func TestRestartResumesFromCommitted(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("resume", 2)
	for p := 0; p < 2; p++ {
		c.ProduceToPartitions(msgsTo("resume", p, 1000, "r", 20)...)
	}
	b := binding("resume", "resume")
	b.BatchSize = 10
	var count atomic.Int64
	half := make(chan struct{})
	release := make(chan struct{})
	first := &recInvoker{t: t, behave: func(n int, recs []events.KafkaRecord) (invoke.Result, error) {
		v := count.Add(int64(len(recs)))
		if v >= 600 && v-int64(len(recs)) < 600 {
			close(half)
		}
		if v >= 600 {
			<-release // hold the in-flight batches until the stop begins
		}
		return invoke.Result{Status: invoke.StatusOK}, nil
	}}
	m1 := startManager(t, c, first, []consumers.Binding{b})
	<-half
	stopped := make(chan struct{})
	go func() { m1.stop(t); close(stopped) }()
	// Release the held batches only once the drain has begun: they must
	// still finish and be committed.
	waitFor(t, 10*time.Second, "drain to start", func() bool { return len(m1.Stats()) == 0 })
	close(release)
	<-stopped

	lag1, err := m1.Lag(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	done1 := map[int64]int64{} // highest offset + 1 finished per partition in run 1
	for _, r := range recordsOf(first.snapshot()) {
		done1[r.Partition] = max(done1[r.Partition], r.Offset+1)
	}
	for _, p := range lag1 {
		want, ok := done1[int64(p.Partition)]
		if !ok {
			want = -1
		}
		if p.Committed != want {
			t.Fatalf("partition %d: committed %d after drain, but run 1 finished up to %d", p.Partition, p.Committed, done1[int64(p.Partition)])
		}
	}

	second := &recInvoker{t: t}
	m2 := startManager(t, c, second, []consumers.Binding{b})
	waitCommitted(t, m2.Manager, b, 30*time.Second)
	minOff := map[int64]int64{0: 1 << 62, 1: 1 << 62}
	seen := map[[2]int64]int{}
	for _, r := range recordsOf(first.snapshot()) {
		seen[[2]int64{r.Partition, r.Offset}]++
	}
	for _, r := range recordsOf(second.snapshot()) {
		seen[[2]int64{r.Partition, r.Offset}]++
		minOff[r.Partition] = min(minOff[r.Partition], r.Offset)
	}
	for _, p := range lag1 {
		if p.Committed < 1000 && minOff[int64(p.Partition)] != max(p.Committed, 0) {
			t.Fatalf("partition %d: run 2 started at %d, committed was %d", p.Partition, minOff[int64(p.Partition)], p.Committed)
		}
	}
	dups := 0
	for p := int64(0); p < 2; p++ {
		for o := int64(0); o < 1000; o++ {
			n := seen[[2]int64{p, o}]
			if n == 0 {
				t.Fatalf("record %d/%d lost", p, o)
			}
			dups += n - 1
		}
	}
	t.Logf("run 1 committed %+v; duplicates across the restart: %d", lag1, dups)
}

func TestApplyReconciles(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("a", 1)
	c.CreateTopic("b", 1)
	inv := &recInvoker{t: t}
	ba, bb := binding("a", "a"), binding("b", "b")
	m := startManager(t, c, inv, []consumers.Binding{ba})
	waitFor(t, 5*time.Second, "binding a running", func() bool { _, ok := m.Stats()["a"]; return ok })
	if err := m.Apply([]consumers.Binding{bb}); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if _, ok := st["a"]; ok {
		t.Fatal("removed binding still running")
	}
	if _, ok := st["b"]; !ok {
		t.Fatal("new binding not running")
	}
	c.ProduceToPartitions(msgsTo("b", 0, 3, "b", 5)...)
	waitCommitted(t, m.Manager, bb, 20*time.Second)
	bb.BatchSize = 7 // a change restarts the binding; its group resumes
	if err := m.Apply([]consumers.Binding{bb}); err != nil {
		t.Fatal(err)
	}
	c.ProduceToPartitions(msgsTo("b", 0, 2, "c", 5)...)
	waitCommitted(t, m.Manager, bb, 20*time.Second)
	var got []string
	for _, r := range recordsOf(inv.snapshot()) {
		got = append(got, strconv.FormatInt(r.Offset, 10))
	}
	if strings.Join(got, ",") != "0,1,2,3,4" {
		t.Fatalf("offsets invoked across the restart: %v", got)
	}
	bad := bb
	bad.BatchSize = 20000
	if err := m.Apply([]consumers.Binding{bad}); !errors.Is(err, consumers.ErrInvalidBinding) {
		t.Fatalf("Apply of an invalid binding: %v", err)
	}
	if err := m.Apply([]consumers.Binding{bb, bb}); !errors.Is(err, consumers.ErrInvalidBinding) {
		t.Fatalf("Apply of a duplicate id: %v", err)
	}
}
