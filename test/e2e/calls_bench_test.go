package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkCallWait: what a call that waits without holding an instance
// costs. A function calls a no-op function 30 times, one after the other
// (examples/caller: the time it waits in its HTTP call, which covers the
// park, the call as an invocation of its own and the resume), against hot
// invokes of the same no-op function through the API, interleaved; and the
// agent's freeze and thaw of the parked container (cgroup.freeze writes,
// from its log).
func BenchmarkCallWait(b *testing.B) {
	s := newCallStack(b, 10000) // "slow" sleeps 0 ms here: a no-op
	call := func() time.Duration {
		res, err := s.client.Invoke(s.ctx(), "caller", "", []byte(`{"function":"slow","payload":{"ms":0}}`))
		if err != nil || !res.OK() {
			b.Fatalf("caller: %+v %v", res, err)
		}
		var out callerResult
		if err := json.Unmarshal(res.Payload, &out); err != nil || out.CallStatus != 200 {
			b.Fatalf("caller: %s %v", res.Payload, err)
		}
		return time.Duration(out.WaitedUS) * time.Microsecond
	}
	direct := func() time.Duration {
		t0 := time.Now()
		res, err := s.client.Invoke(s.ctx(), "slow", "", []byte(`{"ms":0}`))
		if err != nil || !res.OK() {
			b.Fatalf("slow: %+v %v", res, err)
		}
		return time.Since(t0)
	}
	for range 5 { // warm-up: both containers hot
		call()
		direct()
	}
	var calls, directs []time.Duration
	for range 30 {
		calls = append(calls, call())
		directs = append(directs, direct())
	}
	c, d := median(calls), median(directs)
	report(b, "a call that waits, seen by the caller (park, call, resume) p50", ms(c), "ms-call")
	report(b, "hot invoke of the callee through the API p50", ms(d), "ms-invoke")
	report(b, "call / invoke", ms(c)/ms(d), "x-call")

	log, err := os.ReadFile(filepath.Join(s.dir, "emberd-0.log"))
	if err != nil {
		b.Fatal(err)
	}
	report(b, "freeze of the parked container p50", usMedian(b, log, "freeze_us"), "ms-freeze")
	report(b, "thaw p50", usMedian(b, log, "thaw_us"), "ms-thaw")
}

// usMedian is the median, in ms, of a microseconds field in JSON log lines.
func usMedian(b *testing.B, log []byte, field string) float64 {
	var v []float64
	for _, m := range regexp.MustCompile(`"`+field+`":(\d+)`).FindAllSubmatch(log, -1) {
		n, _ := strconv.ParseFloat(string(m[1]), 64)
		v = append(v, n/1000)
	}
	if len(v) == 0 {
		b.Fatalf("no %s in emberd's log", field)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// BenchmarkCallCheckpoint: with --criu, what checkpointing a waiting
// function costs: a caller (examples/caller, 8 MB held) calls a function
// that sleeps 500 ms, 10 times; --checkpoint-after 50ms, so each wait is
// checkpointed. Reports the dump and the restore (the agent's log) and how
// much longer than the 500 ms the caller waited.
func BenchmarkCallCheckpoint(b *testing.B) {
	s := newCallStack(b, 10000, "--criu", testenv.Tool("criu"), "--checkpoint-after", "50ms")
	var extra []time.Duration
	for range 10 {
		res, err := s.client.Invoke(s.ctx(), "caller", "", []byte(`{"function":"slow","payload":{"ms":500},"mb":8}`))
		if err != nil || !res.OK() {
			b.Fatalf("caller: %+v %v\n%s", res, err, s.log())
		}
		var out callerResult
		if err := json.Unmarshal(res.Payload, &out); err != nil || out.CallStatus != 200 || !out.MemoryIntact {
			b.Fatalf("caller: %s %v", res.Payload, err)
		}
		extra = append(extra, time.Duration(out.WaitedUS)*time.Microsecond-500*time.Millisecond)
	}
	log, err := os.ReadFile(filepath.Join(s.dir, "emberd-0.log"))
	if err != nil {
		b.Fatal(err)
	}
	report(b, "checkpoint (CRIU dump) of a waiting function p50", usMedian(b, log, "dump_us"), "ms-dump")
	report(b, "restore into its container p50", usMedian(b, log, "restore_us"), "ms-restore")
	report(b, "a 500 ms call's wait beyond 500 ms, checkpointed, p50", ms(median(extra)), "ms-extra")
}
