package emberd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/invoke"
)

type fixedInvoker struct {
	res invoke.Result
	err error
}

func (f fixedInvoker) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	return f.res, f.err
}

func TestUsageRecordFields(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	inv := &invoke.Invocation{ID: "inv-1", Tenant: "acme", Function: "echo", Source: "b1"}
	res := invoke.Result{
		Status: invoke.StatusOK, Version: "3", HandlerStart: start, Duration: 12340 * time.Microsecond, Start: invoke.StartPoolHit,
		Usage: &invoke.Usage{CPU: 3200 * time.Microsecond, MemoryPeakBytes: 21<<20 - 5, MemorySizeMB: 128,
			TxBytes: 120, TxPackets: 2, NetworkMeasured: true, Source: "ebpf"},
	}
	r := usageRecord(inv, res, time.Now())
	want := UsageRecord{Tenant: "acme", Function: "echo", Version: "3", InvocationID: "inv-1", Source: "b1",
		Status: "ok", Start: start, StartKind: "pool_hit", DurationMs: 12.34, BilledMs: 13, MemoryMB: 128, MaxMemoryUsedMB: 21,
		CPUNs: 3200000, TxBytes: 120, TxPackets: 2, NetworkMeasured: true, GBSeconds: 0.125 * 0.013, Accounting: "ebpf"}
	if r != want {
		t.Fatalf("record\n got %+v\nwant %+v", r, want)
	}
}

// TestUsageProduced runs the decorator against the Kafka-protocol broker:
// the record of an invocation arrives on the usage topic; an Ember failure
// produces none.
func TestUsageProduced(t *testing.T) {
	b, err := embedded.Start(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// emberd creates the usage topic before it serves (ensureSystemTopics).
	topics, err := consumers.NewTopics(b.Addrs(), consumers.Conn{})
	if err != nil {
		t.Fatal(err)
	}
	defer topics.Close()
	if err := topics.CreateTopic(context.Background(), "usage-test", -1); err != nil {
		t.Fatal(err)
	}
	res := invoke.Result{Status: invoke.StatusOK, Version: "1", Duration: 2 * time.Millisecond,
		Usage: &invoke.Usage{CPU: time.Millisecond, MemorySizeMB: 256, MemoryPeakBytes: 1 << 20, Source: "cgroup"}}
	u, err := newUsageInvoker(fixedInvoker{res: res}, b.Addrs(), &kafka.Transport{}, "usage-test", prometheus.NewRegistry(), zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.run(ctx) }()

	got, err := u.Invoke(ctx, &invoke.Invocation{ID: "inv-ok", Tenant: "acme", Function: "fn"})
	if err != nil || got.Version != "1" {
		t.Fatalf("Invoke = %+v, %v", got, err)
	}
	failing := &usageInvoker{next: fixedInvoker{err: errors.New("no capacity")}, queue: u.queue, dropped: u.dropped}
	if _, err := failing.Invoke(ctx, &invoke.Invocation{ID: "inv-failed", Tenant: "acme", Function: "fn"}); err == nil {
		t.Fatal("the decorator hid an Ember failure")
	}
	if _, err := u.Invoke(ctx, &invoke.Invocation{ID: "inv-ok-2", Tenant: "acme", Function: "fn"}); err != nil {
		t.Fatal(err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: b.Addrs(), Topic: "usage-test", MaxWait: 50 * time.Millisecond})
	defer r.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	var ids []string
	for len(ids) < 2 {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("read usage topic (have %v): %v", ids, err)
		}
		var rec UsageRecord
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != "acme/fn" || rec.MemoryMB != 256 || rec.GBSeconds != 0.25*0.002 || rec.Accounting != "cgroup" {
			t.Errorf("record %s key %s", m.Value, m.Key)
		}
		ids = append(ids, rec.InvocationID)
	}
	if ids[0] != "inv-ok" || ids[1] != "inv-ok-2" {
		t.Errorf("records for %v, want inv-ok, inv-ok-2 (and none for the failure)", ids)
	}
	// The same two invocations, summed for the dashboard; none for another tenant.
	want := []wire.FunctionUsage{{Tenant: "acme", Function: "fn", Invocations: 2, DurationMs: 4, CPUMs: 2, MaxMemoryUsedMB: 1, GBSeconds: 2 * 0.25 * 0.002}}
	if got := u.Usage("acme"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("usage %+v, want %+v", got, want)
	}
	if got := u.Usage("other"); len(got) != 0 {
		t.Errorf("another tenant's usage: %+v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestUsageNeverDelays: with no broker at all and nothing draining the
// queue, invocations return at once and surplus records are dropped.
func TestUsageNeverDelays(t *testing.T) {
	u, err := newUsageInvoker(fixedInvoker{res: invoke.Result{Status: invoke.StatusOK}}, []string{"127.0.0.1:1"}, &kafka.Transport{}, "t",
		prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range usageQueue + 100 {
		if _, err := u.Invoke(context.Background(), &invoke.Invocation{ID: "x", Tenant: "a", Function: "f"}); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d invocations took %v", usageQueue+100, took)
	}
	var m dto.Metric
	if err := u.dropped.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 100 {
		t.Errorf("dropped %v, want 100", got)
	}
}

// TestUsageFullBatchEndsLinger: the writer lingers for more records, but
// an invocation that leaves a whole batch queued ends the linger (else a
// busy emberd would produce at most a batch per linger).
func TestUsageFullBatchEndsLinger(t *testing.T) {
	u, err := newUsageInvoker(fixedInvoker{res: invoke.Result{Status: invoke.StatusOK}}, []string{"127.0.0.1:1"}, &kafka.Transport{},
		"usage-test", prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	u.linger = time.Hour // only the signal can end it
	inv := &invoke.Invocation{ID: "i", Tenant: "t", Function: "f"}
	if _, err := u.Invoke(context.Background(), inv); err != nil {
		t.Fatal(err)
	}
	first := <-u.queue
	wctx, cancel := context.WithCancel(context.Background())
	cancel() // the broker is unreachable anyway: the produce fails at once
	done := make(chan struct{})
	go func() { defer close(done); u.write(context.Background(), wctx, first) }()
	for i := range usageBatch {
		if i < usageBatch-1 && len(u.full) != 0 {
			t.Fatalf("signalled with %d records queued, want %d", len(u.queue), usageBatch)
		}
		if _, err := u.Invoke(context.Background(), inv); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer went on lingering with a whole batch queued")
	}
	// It took first and usageBatch-1 more: one record stays for the next.
	if len(u.queue) != 1 {
		t.Fatalf("%d records left after the write, want 1", len(u.queue))
	}
}
