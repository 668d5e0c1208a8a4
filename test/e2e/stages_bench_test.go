package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkStageBudget: where one warm invocation's time and Ember's CPU
// go, stage by stage, printed beside the budget in docs/architecture.md
// ("Budget of one warm invocation"). A 1024 MB no-op function bound with
// batch 1 to 4 partitions gets 200 events/s for 20 s after a warm-up, so
// nothing queues: latencies are the means of the stage metrics over that
// phase; CPU is a CPU profile of emberd (its in-process agent included)
// over the same 20 s, each sample given to the stage its stack belongs to
// (the embedded broker's samples left out; the rules are coarse: emberd's
// background loops fall to the stage of their package), plus ember-init's
// own CPU time (schedstat of every instance's ember-init, less what they
// use in an idle window just before; container shims, which only wait,
// are named exe and not counted).
// The fetch stage's floor is a bare kafka-go reader on the same broker, in
// the same run; ember-init's is a bare Go relay passing the same messages
// at the same rate (relayFloor).
func BenchmarkStageBudget(b *testing.B) {
	const (
		rate = 200
		secs = 20
	)
	budget := readBudget(b)
	s := newStack(b, "m1024=4", "--max-instances", "8")
	s.deploy("echo", "kafka-echo", noop())
	s.createTopic("stages", 4)
	if _, err := s.client.PutBinding(s.ctx(), wire.Binding{ID: "stages", Function: "echo", Topic: "stages", BatchSize: 1, StartingPosition: "earliest"}); err != nil {
		b.Fatal(err)
	}
	paced(b, s, "stages", 400, rate) // warm-up: four hot containers, connections open
	s.waitNoLag("stages", 400, time.Minute)

	// ember-init's CPU when no invocation runs (instances idle in the
	// pool too): taken out of the loaded window's.
	inits := func() testenv.Threads { return testenv.ProcThreads(testenv.PidsNamed("ember-init")...) }
	idle0 := inits()
	time.Sleep(5 * time.Second) // an idle measurement window, not synchronisation
	idlePerSec := float64(inits().CPUNs-idle0.CPUNs) / 5

	emberd := s.cmd.Process.Pid
	before, initBefore, emberdBefore := s.scrape(), inits(), testenv.ProcThreads(emberd)
	t0 := time.Now()
	prof := make(chan *profile.Profile, 1)
	go func() { prof <- s.cpuProfile(b, secs) }()
	paced(b, s, "stages", rate*secs, rate)
	p := <-prof
	s.waitNoLag("stages", int64(400+rate*secs), time.Minute)
	after, initAfter, emberdAfter := s.scrape(), inits(), testenv.ProcThreads(emberd)
	window := time.Since(t0).Seconds()
	n := counterDelta(before, after, "ember_scheduler_invocations_total", labelled("start=hot"))
	if n < rate*secs*9/10 {
		b.Fatalf("%v hot invocations during the profile, want about %d", n, rate*secs)
	}

	lat := map[string]float64{ // mean ms per invocation
		"fetch":  histMean(before, after, "ember_consumer_event_to_fetch_seconds", labelled()),
		"event":  histMean(before, after, "ember_consumer_fetch_to_invoke_seconds", labelled()),
		"commit": histMean(before, after, "ember_consumer_done_to_commit_seconds", labelled()),
	}
	for _, st := range []string{"claim", "dispatch", "agent", "to_handler", "handler", "from_handler", "release"} {
		lat[st] = histMean(before, after, "ember_scheduler_stage_seconds", labelled("stage="+st, "start=hot"))
	}
	cpu := map[string]float64{} // ms per invocation
	for st, ns := range cpuByStage(p) {
		cpu[st] = float64(ns) / 1e6 / n
	}
	cpu["to_handler"] = (float64(initAfter.CPUNs-initBefore.CPUNs) - idlePerSec*window) / 1e6 / n // ember-init, both ways
	floor, _ := fetchFloor(b, s, "stages-floor", rate, 2000)
	const relays = 4 // as the instances
	relayCPU, relaySwitches := relayFloor(b, relays, rate, rate*10, 512)

	fmt.Printf("BENCH stage budget of one warm invocation (%d ev/s, batch 1, %.0f hot invocations profiled; budget: docs/architecture.md)\n", rate, n)
	fmt.Printf("BENCH   %-13s %12s %12s %12s %12s\n", "stage", "latency ms", "budget", "CPU ms", "budget")
	var ember, emberBudget float64
	for _, row := range budget {
		l, c := "-", "-"
		if v, ok := lat[row.stage]; ok {
			l = fmt.Sprintf("%.3f", v)
		}
		if v, ok := cpu[row.stage]; ok || row.cpu != "-" {
			c = fmt.Sprintf("%.4f", v)
			if row.stage != "handler" {
				ember += v
			}
		}
		if v, err := strconv.ParseFloat(row.cpu, 64); err == nil {
			emberBudget += v
		}
		fmt.Printf("BENCH   %-13s %12s %12s %12s %12s\n", row.stage, l, row.latency, c, row.cpu)
	}
	fmt.Printf("BENCH   %-13s %12s %12s %12.4f %12s\n", "other", "-", "-", cpu["other"], "-")
	ember += cpu["other"]
	report(b, "stage budget: fetch floor, bare kafka-go reader (mean)", floor, "ms-floor")
	report(b, "stage budget: fetch - floor", lat["fetch"]-floor, "ms-fetch-over-floor")
	report(b, "stage budget: event to handler start (mean, batch 1)", histMean(before, after, "ember_binding_event_to_start_seconds", labelled()), "ms-event-to-start")
	report(b, "stage budget: Ember CPU per warm invocation", ember, "ms-cpu")
	report(b, "stage budget: Ember CPU / its budget", ember/emberBudget, "x-cpu-budget")
	report(b, "stage budget: the broker's CPU per invocation (not Ember's)", cpu["broker"], "ms-cpu-broker")
	report(b, fmt.Sprintf("stage budget: ember-init's floor, a bare Go relay with one P (%d processes)", relays), relayCPU, "ms-cpu-relay-floor")
	report(b, "stage budget: ember-init's CPU / its floor", cpu["to_handler"]/relayCPU, "x-init-floor")
	report(b, "stage budget: the relay floor's context switches per invocation", relaySwitches, "switches-relay-floor")
	report(b, "stage budget: ember-init's CPU when idle, all its processes", idlePerSec/1e6, "ms-cpu/s-idle")
	// Most of that CPU goes to switching tasks: these machines are
	// paravirtualised guests, where perf shows ember-init's time mostly in
	// the kernel's task switch.
	report(b, "stage budget: emberd's context switches per invocation", float64(emberdAfter.Switches-emberdBefore.Switches)/n, "switches-emberd")
	report(b, "stage budget: ember-init's context switches per invocation", float64(initAfter.Switches-initBefore.Switches)/n, "switches-init")
}

// budgetRow is one row of the budget table in docs/architecture.md.
type budgetRow struct{ stage, latency, cpu string }

// readBudget reads the per-stage budget from docs/architecture.md: the
// table rows whose first cell is a `stage`.
func readBudget(b *testing.B) []budgetRow {
	f, err := os.Open(filepath.Join("..", "..", "docs", "architecture.md"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var rows []budgetRow
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Budget of one warm invocation"
		}
		cells := strings.Split(line, "|")
		if !in || len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		rows = append(rows, budgetRow{strings.Trim(strings.TrimSpace(cells[1]), "`"), strings.TrimSpace(cells[3]), strings.TrimSpace(cells[4])})
	}
	if len(rows) < 10 {
		b.Fatalf("docs/architecture.md: %d budget rows, want the whole table", len(rows))
	}
	return rows
}

// cpuProfile takes a CPU profile of emberd over the next secs seconds.
func (s *stack) cpuProfile(b *testing.B, secs int) *profile.Profile {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.debug, secs), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Error(err)
		return nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Error(err)
		return nil
	}
	p, err := profile.ParseData(raw)
	if err != nil {
		b.Error(err)
		return nil
	}
	// Kept for a closer look: the stage rules only sort samples.
	out := filepath.Join(os.TempDir(), "ember-stage-budget.pprof")
	if err := os.WriteFile(out, raw, 0o644); err == nil {
		fmt.Printf("BENCH   emberd's CPU profile: go tool pprof -top %s\n", out)
	}
	return p
}

// stageRules give a CPU sample to a stage by the functions on its stack:
// the first rule with a frame containing its marker wins. Stacks of the Go
// runtime alone are "runtime"; the rest are "other" (HTTP API, metrics,
// lag monitor, heartbeats).
var stageRules = []struct{ marker, stage string }{
	{"twmb/franz-go/pkg/kfake", "broker"},
	{"ember/consumers.(*generation).commit", "commit"},
	{"ember/consumers/lagmon", "other"},
	{"ember/engine/scheduler.(*Scheduler).release", "release"},
	{"ember/hostagent.(*Agent).", "agent"},                       // called by dispatch directly when in-process
	{"ember/engine/scheduler.(*Scheduler).dispatch", "dispatch"}, // its gRPC client is in hostagent/dispatchpb
	{"ember/hostagent", "agent"},
	{"ember/engine/", "claim"},
	{"ember/consumers.(*partition).fetch", "fetch"},
	{"segmentio/kafka-go", "fetch"},
	{"ember/consumers", "event"},
	{"google.golang.org/grpc", "dispatch"},
	{"golang.org/x/net/http2", "dispatch"},
	{"redis/go-redis", "claim"},
}

// cpuByStage sums a CPU profile's samples (nanoseconds) by stage.
func cpuByStage(p *profile.Profile) map[string]int64 {
	out := map[string]int64{}
	if p == nil {
		return out
	}
	vi := len(p.SampleType) - 1 // cpu nanoseconds
	for _, smp := range p.Sample {
		var frames []string
		for _, loc := range smp.Location {
			for _, ln := range loc.Line {
				if ln.Function != nil {
					frames = append(frames, ln.Function.Name)
				}
			}
		}
		out[stageOfStack(frames)] += smp.Value[vi]
	}
	return out
}

func stageOfStack(frames []string) string {
	for _, r := range stageRules {
		for _, f := range frames {
			if strings.Contains(f, r.marker) {
				return r.stage
			}
		}
	}
	for _, f := range frames {
		if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/runtime") {
			return "other"
		}
	}
	return "runtime"
}

// fetchFloor is the fetch stage of a bare kafka-go reader configured as
// the consumers' are, on the same broker: the mean and the median ms from
// n records' Kafka timestamps, produced at rate per second to a new topic
// name, to their fetch.
func fetchFloor(b *testing.B, s *stack, name string, rate, n int) (mean, p50 float64) {
	s.createTopic(name, 1)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{s.broker}, Topic: topic(name), Partition: 0,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 100})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(n/rate)*time.Second)
	defer cancel()
	type result struct {
		lat []time.Duration
		err error
	}
	got := make(chan result, 1)
	go func() {
		lat := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				got <- result{err: fmt.Errorf("the floor reader, record %d of %d: %w", i, n, err)}
				return
			}
			lat = append(lat, time.Since(m.Time))
		}
		got <- result{lat: lat}
	}()
	pacedTo(b, s.broker, topic(name), n, rate)
	res := <-got
	if res.err != nil {
		b.Fatal(res.err)
	}
	var sum time.Duration
	for _, d := range res.lat {
		sum += d
	}
	return ms(sum) / float64(n), ms(median(res.lat))
}

// histMean is the mean, in ms, of the observations the matching series
// of a histogram family got between two scrapes.
func histMean(before, after map[string]*dto.MetricFamily, name string, match func(*dto.Metric) bool) float64 {
	return ms(histogramOf(after, name, match).meanSince(histogramOf(before, name, match)))
}

// counterDelta is how much the matching series of a counter family grew
// between two scrapes.
func counterDelta(before, after map[string]*dto.MetricFamily, name string, match func(*dto.Metric) bool) float64 {
	sum := func(fams map[string]*dto.MetricFamily) (s float64) {
		for _, m := range fams[name].GetMetric() {
			if match(m) {
				s += m.GetCounter().GetValue()
			}
		}
		return s
	}
	return sum(after) - sum(before)
}
