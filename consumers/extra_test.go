package consumers_test

import (
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ember-run/ember/consumers"
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
