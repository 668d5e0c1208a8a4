package consumers_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/invoke"
)

type recObserver struct {
	mu      sync.Mutex
	reports []consumers.InvocationReport
}

func (o *recObserver) InvocationDone(r consumers.InvocationReport) {
	o.mu.Lock()
	o.reports = append(o.reports, r)
	o.mu.Unlock()
}

func TestResultTopicAndObserver(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("jobs", 1)
	c.ProduceToPartitions(msgsTo("jobs", 0, 4, "j", 5)...)
	b := binding("jobs", "jobs")
	b.BatchSize = 1
	b.ResultTopic = "jobs-results"
	inv := &recInvoker{t: t, behave: func(n int, recs []events.KafkaRecord) (invoke.Result, error) {
		return invoke.Result{Status: invoke.StatusOK, Payload: []byte(value(recs[0]) + "-done"), Version: "3", Start: invoke.StartHot}, nil
	}}
	obs := &recObserver{}
	m := startManager(t, c, inv, []consumers.Binding{b}, consumers.WithObserver(obs))
	waitCommitted(t, m.Manager, b, 20*time.Second)
	calls := inv.snapshot()
	results := c.ReadAll("jobs-results")
	if len(results) != 4 || len(calls) != 4 {
		t.Fatalf("%d results for %d calls", len(results), len(calls))
	}
	ids := map[string]string{}
	for _, cl := range calls {
		ids[cl.inv.ID] = value(cl.records[0]) + "-done"
	}
	for _, r := range results {
		if want, ok := ids[string(r.Key)]; !ok || string(r.Value) != want {
			t.Fatalf("result key %q value %q: want an invocation id and %q", r.Key, r.Value, want)
		}
		if header(r.Headers, consumers.HeaderBinding) != "jobs" || header(r.Headers, consumers.HeaderStatus) != "ok" ||
			header(r.Headers, consumers.HeaderVersion) != "3" {
			t.Fatalf("result headers %v", r.Headers)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.reports) != 4 {
		t.Fatalf("observer saw %d invocations", len(obs.reports))
	}
	for _, r := range obs.reports {
		if r.Binding != "jobs" || r.Records != 1 || r.Attempt != 1 || r.Err != nil || r.Result.Start != invoke.StartHot ||
			r.FirstFetched.IsZero() || r.InvokeStart.Before(r.FirstFetched) || r.Done.Before(r.InvokeStart) {
			t.Fatalf("report %+v", r)
		}
	}
}

func TestBatchWindowWaitsForMore(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("win", 1)
	b := binding("win", "win")
	b.BatchWindow = 2 * time.Second
	inv := &recInvoker{t: t}
	m := startManager(t, c, inv, []consumers.Binding{b})
	all := msgsTo("win", 0, 3, "w", 5)
	c.ProduceToPartitions(all[0])
	waitFor(t, 10*time.Second, "first record fetched", func() bool { return m.Stats()["win"].RecordsIn == 1 })
	c.ProduceToPartitions(all[1:]...)
	waitCommitted(t, m.Manager, b, 20*time.Second)
	calls := inv.snapshot()
	if len(calls) != 1 || len(calls[0].records) != 3 {
		t.Fatalf("want one invocation of 3 records within the window, got %d calls", len(calls))
	}
}

// holdInvoker records each call like recInvoker, then holds it until ctx is
// done and fails it as a platform failure: nothing it is given is ever
// finished, so nothing is committed.
type holdInvoker struct{ *recInvoker }

func (h holdInvoker) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	if _, err := h.recInvoker.Invoke(ctx, inv); err != nil {
		return invoke.Result{}, err
	}
	<-ctx.Done()
	return invoke.Result{}, ctx.Err()
}

// A `latest` binding fixes its position when it starts: records produced
// after that and fetched, but never committed, by a process that then stops
// (a crash before its first commit) are invoked by the next process on the
// same group, instead of being skipped by a new seek to the end.
func TestLatestPositionPinnedAcrossUncommittedRestart(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("late", 2)
	c.ProduceToPartitions(msgsTo("late", 0, 5, "old", 10)...) // before the binding: never invoked
	b := binding("late", "late")
	b.StartingPosition = settings.Latest
	b.BatchSize = 3

	first := holdInvoker{&recInvoker{t: t}}
	m1 := startManager(t, c, first, []consumers.Binding{b},
		consumers.WithCommitInterval(time.Hour), consumers.WithDrainTimeout(100*time.Millisecond))
	// The pin is observable: the group committed each partition's end.
	pinned := waitCommitted(t, m1.Manager, b, 10*time.Second)
	if len(pinned) != 2 || pinned[0].Committed != 5 || pinned[1].Committed != 0 {
		t.Fatalf("pinned offsets %+v, want 5 and 0", pinned)
	}
	var fresh []kafka.Message
	fresh = append(fresh, msgsTo("late", 0, 5, "new", 10)...)
	fresh = append(fresh, msgsTo("late", 1, 5, "new", 10)...)
	c.ProduceToPartitions(fresh...)
	waitFor(t, 10*time.Second, "run 1 to fetch the 10 new records", func() bool { return m1.Stats()["late"].RecordsIn == 10 })
	m1.stop(t)
	if lag, err := m1.Lag(t.Context(), b); err != nil || lag[0].Committed != 5 || lag[1].Committed != 0 {
		t.Fatalf("run 1 committed unfinished records: %+v %v", lag, err)
	}

	second := &recInvoker{t: t}
	m2 := startManager(t, c, second, []consumers.Binding{b})
	waitCommitted(t, m2.Manager, b, 20*time.Second)

	seen := map[string]bool{}
	for _, r := range append(recordsOf(first.snapshot()), recordsOf(second.snapshot())...) {
		if strings.HasPrefix(value(r), "old-") {
			t.Fatalf("record %d/%d produced before the binding started was invoked", r.Partition, r.Offset)
		}
	}
	for _, r := range recordsOf(second.snapshot()) {
		seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = true
	}
	var got []string
	for k := range seen {
		got = append(got, k)
	}
	sort.Strings(got)
	want := "0/5 0/6 0/7 0/8 0/9 1/0 1/1 1/2 1/3 1/4"
	if strings.Join(got, " ") != want {
		t.Fatalf("run 2 invoked %v, want every record produced after the pin: %s", got, want)
	}
}
