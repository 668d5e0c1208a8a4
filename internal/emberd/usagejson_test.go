package emberd

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzUsageRecordJSON: appendJSON writes what encoding/json writes, byte
// for byte, whatever the record holds; what it leaves to encoding/json is
// only what that refuses or a start outside UTC.
func FuzzUsageRecordJSON(f *testing.F) {
	f.Add("acme", "echo", "$LATEST", "c03096540ea8258f", "b1", "ok", int64(1764611723615453000), "hot", 0.583, int64(1), int64(1024),
		int64(21), int64(3200000), int64(120), int64(0), int64(2), int64(0), true, 0.001, "ebpf", "agent-1", "i-7")
	f.Add("t<&>\\\"", "é\u2028\x01", "", "", "", "function_error", int64(math.MinInt64), "", 1e-7, int64(-5), int64(0),
		int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), false, 1e21, "<", "", "")
	f.Add("a", "b", "c", "d", "", "timeout", int64(math.MaxInt64), "cold", math.NaN(), int64(0), int64(0),
		int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), false, 0.0, "", "", "\xff")
	f.Fuzz(func(t *testing.T, tenant, function, version, id, source, status string, startNs int64, kind string, dur float64,
		billed, mem, maxMem, cpu, rx, tx, rxp, txp int64, measured bool, gbs float64, acct, agent, inst string) {
		r := UsageRecord{Tenant: tenant, Function: function, Version: version, InvocationID: id, Source: source, Status: status,
			Start: time.Unix(0, startNs).UTC(), StartKind: kind, DurationMs: dur, BilledMs: billed, MemoryMB: mem, MaxMemoryUsedMB: maxMem,
			CPUNs: cpu, RxBytes: rx, TxBytes: tx, RxPackets: rxp, TxPackets: txp, NetworkMeasured: measured, GBSeconds: gbs,
			Accounting: acct, Agent: agent, Instance: inst}
		want, werr := json.Marshal(r)
		got, ok := r.appendJSON([]byte("prefix"))
		if !ok {
			if werr == nil && !bad(dur) && !bad(gbs) {
				t.Fatalf("appendJSON left to encoding/json a record it encodes: %s", want)
			}
			return
		}
		if werr != nil {
			t.Fatalf("appendJSON encoded what encoding/json refuses (%v): %s", werr, got)
		}
		if !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Fatalf("appendJSON differs from encoding/json:\n got %s\nwant prefix%s", got, want)
		}
	})
}

// TestUsageRecordJSONStarts: starts the fuzzer cannot reach (it makes them
// from nanoseconds since 1970): the zero time and the years at and past
// encoding/json's bounds, and a start outside UTC (left to encoding/json;
// usageRecord's never is).
func TestUsageRecordJSONStarts(t *testing.T) {
	for _, start := range []time.Time{{}, time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 18, 0, 0, 500, time.UTC)} {
		r := UsageRecord{Start: start}
		want, werr := json.Marshal(r)
		got, ok := r.appendJSON(nil)
		if ok != (werr == nil) || ok && !bytes.Equal(got, want) {
			t.Errorf("start %v: appendJSON %q (%v), encoding/json %q (%v)", start, got, ok, want, werr)
		}
	}
	r := UsageRecord{Start: time.Date(2026, 12, 1, 18, 0, 0, 5, time.FixedZone("x", 3600))}
	if _, ok := r.appendJSON(nil); ok {
		t.Fatal("appendJSON encoded a start outside UTC")
	}
}

// BenchmarkUsageRecordJSON: one invocation's usage record encoded by
// appendJSON against encoding/json, the two alternating in each iteration.
func BenchmarkUsageRecordJSON(b *testing.B) {
	r := UsageRecord{Tenant: "acme", Function: "echo", Version: "$LATEST", InvocationID: "c03096540ea8258f4d2a", Source: "orders",
		Status: "ok", Start: time.Date(2026, 12, 1, 18, 35, 23, 615453123, time.UTC), StartKind: "hot", DurationMs: 0.583211,
		BilledMs: 1, MemoryMB: 1024, MaxMemoryUsedMB: 21, CPUNs: 321000, TxBytes: 120, TxPackets: 2, NetworkMeasured: true,
		GBSeconds: 0.0009765625, Accounting: "ebpf", Agent: "host-1", Instance: "i-0a1b2c3d"}
	var std, own time.Duration
	buf := make([]byte, 0, 512)
	for b.Loop() {
		t0 := time.Now()
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		buf, _ = r.appendJSON(buf[:0])
		own += time.Since(t1)
		std += t1.Sub(t0)
	}
	b.ReportMetric(float64(std.Nanoseconds())/float64(b.N), "ns/op-encoding-json")
	b.ReportMetric(float64(own.Nanoseconds())/float64(b.N), "ns/op-appendJSON")
	b.ReportMetric(float64(own)/float64(std), "x-appendJSON")
}
