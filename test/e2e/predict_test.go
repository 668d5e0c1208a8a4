package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/emberd"
)

// chainRun is what phase two of a chain run saw of B.
type chainRun struct {
	starts    int            // B's invocations
	hot       int            // ... that were hot starts
	firstCold int            // instances whose first B start was not hot
	instances map[string]int // B's invocations per instance
	// eventToStart is B's mean event-to-handler-start latency.
	eventToStart time.Duration
	profile      wire.TaskProfile
	// loads are the predictor's load outcomes in phase two.
	loads map[string]float64
}

// runChain runs the chain A -> result topic -> binding of B on a fresh
// stack: A sleeps 200 ms per event, B does nothing. Phase one (40 events)
// lets Ember learn that B follows A; then B's containers are stopped for
// being idle (--container-keep-alive 2s) while the instances stay with the
// tenant; phase two (n events) is measured.
func runChain(t testing.TB, n int, predict bool) chainRun {
	s := newStack(t, "m128=4", "--container-keep-alive", "2s", fmt.Sprintf("--predict=%v", predict))
	s.createTopic("chain.in", 4)
	s.createTopic("chain.mid", 4)
	cfg := wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000, Env: map[string]string{"SLEEP_MS": "200"}}
	s.deploy("a", "sleep", cfg)
	s.deploy("b", "sleep", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000})
	for _, b := range []wire.Binding{
		{ID: "chain-a", Function: "a", Topic: "chain.in", BatchSize: 1, StartingPosition: "earliest", ResultTopic: "chain.mid"},
		{ID: "chain-b", Function: "b", Topic: "chain.mid", BatchSize: 1, StartingPosition: "earliest"},
	} {
		if _, err := s.client.PutBinding(s.ctx(), b); err != nil {
			t.Fatalf("bind %s: %v", b.ID, err)
		}
	}
	produce := func(from, to int) {
		vals := make([]string, 0, to-from)
		for i := from; i < to; i++ {
			vals = append(vals, fmt.Sprintf(`{"i":%d}`, i))
		}
		s.produce("chain.in", vals, 0)
		s.waitNoLag("chain-b", int64(to), 2*time.Minute)
	}
	profile := func() wire.TaskProfile {
		st, err := s.client.Status(s.ctx())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Profiles {
			if p.From == "a" && p.To == "b" {
				return p
			}
		}
		return wire.TaskProfile{}
	}

	const learn = 40
	produce(0, learn)
	if predict {
		deadline := time.Now().Add(30 * time.Second)
		for p := profile(); p.Follows < 30 || p.Probability < 0.9; p = profile() {
			if time.Now().After(deadline) {
				t.Fatalf("no task profile a -> b after %d chained events: %+v", learn, p)
			}
			time.Sleep(200 * time.Millisecond) // profiles are written every second
		}
	}
	// B's containers stop for being idle: no instance holds B any more.
	rdb := redis.NewClient(&redis.Options{Addr: s.redis})
	defer rdb.Close()
	hotB := "{ember}:hot:" + pool.VersionKey(tenant, "b", "$LATEST")
	deadline := time.Now().Add(30 * time.Second)
	for rdb.SCard(s.ctx(), hotB).Val() > 0 || rdb.ZCard(s.ctx(), "{ember}:busy").Val() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("B's containers were not stopped after being idle past the keep-alive")
		}
		time.Sleep(100 * time.Millisecond)
	}

	loadsBefore := s.counters("ember_predict_loads_total")
	before := s.eventToStart("chain-b")
	phase2 := time.Now()
	produce(learn, learn+n)
	after := s.eventToStart("chain-b")
	out := chainRun{instances: map[string]int{}, profile: profile(), loads: map[string]float64{}}
	for k, v := range s.counters("ember_predict_loads_total") {
		if d := v - loadsBefore[k]; d > 0 {
			out.loads[k] = d
		}
	}
	out.eventToStart = after.meanSince(before)
	// Usage records are produced after each invocation returned: wait for
	// all of them.
	var recs []emberd.UsageRecord
	deadline = time.Now().Add(30 * time.Second)
	for {
		recs = recs[:0]
		for _, m := range s.readKafkaTopic(emberd.DefaultUsageTopic) {
			var r emberd.UsageRecord
			if err := json.Unmarshal(m.Value, &r); err != nil {
				t.Fatalf("usage record %s: %v", m.Value, err)
			}
			if r.Function == "b" && r.Start.After(phase2) {
				recs = append(recs, r)
			}
		}
		if len(recs) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	seen := map[string]bool{}
	for _, r := range recs {
		out.starts++
		out.instances[r.Instance]++
		if r.StartKind == "hot" {
			out.hot++
		}
		if !seen[r.Instance] {
			seen[r.Instance] = true
			if r.StartKind != "hot" {
				out.firstCold++
			}
		}
	}
	if out.starts != n {
		t.Fatalf("phase two: %d usage records of B, want %d", out.starts, n)
	}
	if predict {
		s.learnThroughAPI(t)
	}
	return out
}

// learnThroughAPI: a function that invokes another through the API and
// passes on the trace id it was given names itself as the cause. Here the
// test plays B calling A four times.
func (s *stack) learnThroughAPI(t testing.TB) {
	t.Helper()
	for range 4 {
		trace := fmt.Sprintf("Root=1-%08x-0123456789abcdef01234567;Ember=b@%d", time.Now().Unix(), time.Now().UnixMilli())
		req, _ := http.NewRequestWithContext(s.ctx(), http.MethodPost, "http://"+s.api+"/v1/functions/a/invoke", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+s.tenantKey)
		req.Header.Set("X-Amzn-Trace-Id", trace)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("invoke a: %s", resp.Status)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := s.client.Status(s.ctx())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Profiles {
			if p.From == "b" && p.To == "a" && p.Follows > 3.9 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no profile b -> a after 4 API invokes naming b in their trace id: %+v", st.Profiles)
		}
		time.Sleep(200 * time.Millisecond) // profiles are written every second
	}
}

// TestPredictivePrewarm: in the chain A -> result topic -> binding of B,
// Ember learns that B follows A (the task profile shows in the status), and
// with prediction at least 95% of B's starts in 200 events are hot, and the
// first on some instance is (B was loaded there when A started); without
// prediction the first B start on each instance is not hot.
func TestPredictivePrewarm(t *testing.T) {
	var without, with chainRun
	t.Run("without", func(t *testing.T) { without = runChain(t, 200, false) })
	t.Run("with", func(t *testing.T) { with = runChain(t, 200, true) })
	if t.Failed() {
		return
	}
	t.Logf("without prediction: %d/%d hot, first start not hot on %d of %d instances, event to start %v",
		without.hot, without.starts, without.firstCold, len(without.instances), without.eventToStart)
	t.Logf("with prediction: %d/%d hot, first start not hot on %d of %d instances, event to start %v; loads %v; profile %+v",
		with.hot, with.starts, with.firstCold, len(with.instances), with.eventToStart, with.loads, with.profile)
	if without.firstCold != len(without.instances) || without.firstCold == 0 {
		t.Errorf("without prediction, the first B start was not hot on %d of %d instances, want all", without.firstCold, len(without.instances))
	}
	if float64(with.hot) < 0.95*float64(with.starts) {
		t.Errorf("with prediction only %d of %d B starts were hot, want at least 95%%", with.hot, with.starts)
	}
	if with.firstCold >= len(with.instances) {
		t.Errorf("with prediction the first B start was not hot on any of %d instances: nothing was loaded ahead in time", len(with.instances))
	}
	// (counts decay: one prediction a few seconds old weighs 0.99)
	if p := with.profile; p.Predictions < 0.9 || p.Hits < 0.9 || p.DelayMs < 200 || p.Probability < 0.9 {
		t.Errorf("profile a -> b after the run: %+v; want predictions and hits, a delay of at least A's 200 ms, probability ~1", p)
	}
}

// BenchmarkChainPrediction: B's mean event-to-handler-start latency in the
// chain A -> result topic -> binding of B (200 events, after B's containers
// went idle), with and without prediction, in one run.
func BenchmarkChainPrediction(b *testing.B) {
	var without, with chainRun
	b.Run("without", func(b *testing.B) { without = runChain(b, 200, false) })
	b.Run("with", func(b *testing.B) { with = runChain(b, 200, true) })
	report(b, "B event to start, with prediction (ms, mean of 200)", ms(with.eventToStart), "ms")
	report(b, "B event to start, without prediction (ms, mean of 200)", ms(without.eventToStart), "ms")
	report(b, "with / without", float64(with.eventToStart)/float64(without.eventToStart), "x")
	report(b, "B hot starts with prediction (%)", 100*float64(with.hot)/float64(with.starts), "%")
	report(b, "B hot starts without prediction (%)", 100*float64(without.hot)/float64(without.starts), "%")
}

// histogram is a scraped histogram's sum (seconds) and count.
type histogram struct {
	sum   float64
	count uint64
}

// histogramOf sums the series of histogram family name that match.
func histogramOf(fams map[string]*dto.MetricFamily, name string, match func(*dto.Metric) bool) histogram {
	var out histogram
	for _, m := range fams[name].GetMetric() {
		if match(m) {
			out.sum += m.GetHistogram().GetSampleSum()
			out.count += m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

// meanSince is the mean of the observations made after before (0 if none).
func (h histogram) meanSince(before histogram) time.Duration {
	if h.count <= before.count {
		return 0
	}
	return time.Duration((h.sum - before.sum) / float64(h.count-before.count) * float64(time.Second))
}

// labelled matches series whose labels include each name=value given.
func labelled(want ...string) func(*dto.Metric) bool {
	return func(m *dto.Metric) bool {
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				return false
			}
		}
		return true
	}
}

// counters scrapes the named counter families, by name{label values}.
func (s *stack) counters(names ...string) map[string]float64 {
	s.t.Helper()
	fams := s.scrape()
	out := map[string]float64{}
	for _, n := range names {
		for _, m := range fams[n].GetMetric() {
			k := n
			for _, l := range m.GetLabel() {
				k += "{" + l.GetValue() + "}"
			}
			out[k] = m.GetCounter().GetValue()
		}
	}
	return out
}

// eventToStart scrapes binding's ember_binding_event_to_start_seconds.
func (s *stack) eventToStart(binding string) histogram {
	s.t.Helper()
	return histogramOf(s.scrape(), "ember_binding_event_to_start_seconds", func(m *dto.Metric) bool {
		return slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == "binding" && strings.HasSuffix(l.GetValue(), binding)
		})
	})
}

// scrape reads emberd's /metrics.
func (s *stack) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	req, _ := http.NewRequestWithContext(s.ctx(), http.MethodGet, "http://"+s.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}
