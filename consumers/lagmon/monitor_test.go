package lagmon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/consumers/kafkatest"
	"github.com/ember-run/ember/consumers/lagmon"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/invoke"
)

// scripted is an Invoker whose behaviour is chosen per topic.
type scripted struct {
	slow  time.Duration // per invocation, topic "slow"
	stuck atomic.Bool   // partition 0 of topic "stuck" never finishes while set
}

func (s *scripted) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	var ev events.KafkaEvent
	if err := json.Unmarshal(inv.Payload, &ev); err != nil {
		return invoke.Result{}, err
	}
	for tp := range ev.Records {
		switch {
		case tp == "slow-0":
			time.Sleep(s.slow) // the function's work
		case tp == "rewound-0":
			time.Sleep(s.slow / 2) // slow enough for a sample to see the rewound offset
		case tp == "stuck-0" && s.stuck.Load():
			<-ctx.Done()
			return invoke.Result{}, ctx.Err()
		}
	}
	return invoke.Result{InvocationID: inv.ID, Status: invoke.StatusOK, Payload: []byte(`"ok"`)}, nil
}

func bind(topic string) consumers.Binding {
	return consumers.Binding{ID: topic, Tenant: "t1", Function: "fn", Topic: topic,
		Settings: settings.Settings{StartingPosition: settings.TrimHorizon, BatchSize: 1, MaxRetryAttempts: 2}}
}

// Scripted scenarios, each a binding of one running Manager watched by one
// Monitor: a consumer that keeps up, a slow function, a stuck partition, a
// stopped binding and a rewind.
func TestScenarios(t *testing.T) {
	c := kafkatest.Start(t, embedded.Config{RetentionInterval: -1})
	for _, topic := range []string{"keeps", "slow", "stopped", "rewound"} {
		c.CreateTopic(topic, 1)
	}
	c.CreateTopic("stuck", 2)
	inv := &scripted{slow: 40 * time.Millisecond}
	inv.stuck.Store(true)
	m, err := consumers.New(c.Brokers, inv,
		consumers.WithGroupTimings(6*time.Second, 200*time.Millisecond, 6*time.Second),
		consumers.WithCommitInterval(50*time.Millisecond), consumers.WithFetchMaxWait(50*time.Millisecond),
		consumers.WithDrainTimeout(time.Second), consumers.WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	running := []consumers.Binding{bind("keeps"), bind("slow"), bind("stuck"), bind("stopped"), bind("rewound")}
	if err := m.Apply(running); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = m.Run(ctx); close(done) }()
	t.Cleanup(func() { inv.stuck.Store(false); cancel(); <-done })

	var targets []lagmon.Target
	for _, b := range running {
		targets = append(targets, lagmon.Target{Key: "t1/" + b.ID, Tenant: "t1", Topic: b.Topic, Group: consumers.DefaultGroupIDPrefix + b.ID})
	}
	mon := lagmon.New(&kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 5 * time.Second}, lagmon.Config{
		Interval: 100 * time.Millisecond, Window: 6,
		Targets: func(context.Context) ([]lagmon.Target, error) { return targets, nil },
		Local: func(key string, partition int, offset int64) (time.Time, bool) {
			return m.RecordTime(strings.TrimPrefix(key, "t1/"), partition, offset)
		},
	})
	go func() { _ = mon.Run(ctx) }()
	status := func(key string) lagmon.Binding { b, _ := mon.Binding(key); return b }
	waitStatus := func(key string, want lagmon.Status, what string) lagmon.Binding {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			b := status(key)
			if b.Status == want && !b.At.IsZero() {
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s is %s (%s), want %s", what, key, b.Status, b.Reason, want)
			}
			time.Sleep(mon.Interval()) // one sample
		}
	}

	// Records for all: 40 each; "slow" keeps receiving 50/s for a while.
	for _, topic := range []string{"keeps", "stopped", "rewound"} {
		c.ProduceToPartitions(msgs(topic, 0, 40)...)
	}
	c.ProduceToPartitions(append(msgs("stuck", 0, 5), msgs("stuck", 1, 20)...)...)
	var produced atomic.Int64
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		for i := range 100 {
			if err := c.TryProduceToPartitions(msgs("slow", 0, 1)...); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			produced.Store(int64(i + 1))
			time.Sleep(20 * time.Millisecond) // the producer's pace: 50/s against 25/s consumed
		}
	}()

	// A consumer that keeps up: OK, no lag in records or seconds.
	b := waitStatus("t1/keeps", lagmon.OK, "keeps up")
	for b.Lag != 0 {
		time.Sleep(mon.Interval())
		b = status("t1/keeps")
	}
	if b.LagSeconds != 0 || b.DrainSeconds != 0 {
		t.Fatalf("a consumer without lag: %+v", b)
	}

	// A slow function: WARN while the lag grows, in seconds too.
	b = waitStatus("t1/slow", lagmon.WARN, "slow function")
	first := b.LagSeconds
	for b = status("t1/slow"); b.LagSeconds <= first && produced.Load() < 100; b = status("t1/slow") {
		time.Sleep(mon.Interval())
	}
	if b.LagSeconds <= first || b.DrainSeconds != -1 {
		t.Fatalf("falling behind: lag seconds %v then %v, drain %v (want growing, -1)", first, b.LagSeconds, b.DrainSeconds)
	}
	t.Logf("slow: %s, %d records and %.2fs behind", b.Reason, b.Lag, b.LagSeconds)
	<-producing
	// Once the producer's last records leave the window, the estimate is
	// the lag over the consume rate.
	for b = status("t1/slow"); b.ProduceRate > 0 && b.Lag > 0; b = status("t1/slow") {
		time.Sleep(mon.Interval())
	}
	if b.Lag > 0 {
		est := float64(b.Lag) / b.ConsumeRate
		if b.DrainSeconds < est*0.9 || b.DrainSeconds > est*1.1 || b.ConsumeRate < 5 || b.ConsumeRate > 40 {
			t.Fatalf("drain estimate %.2fs for %d records at %.1f/s", b.DrainSeconds, b.Lag, b.ConsumeRate)
		}
		t.Logf("slow, producer stopped: %d records, drains in %.2fs at %.1f records/s", b.Lag, b.DrainSeconds, b.ConsumeRate)
	}

	// A stuck partition: STALL there, OK on the other.
	b = waitStatus("t1/stuck", lagmon.STALL, "stuck partition")
	for _, p := range b.Partitions {
		if want := map[int]lagmon.Status{0: lagmon.STALL, 1: lagmon.OK}[p.Partition]; p.Status != want {
			t.Fatalf("stuck binding, partition %d: %s (%s), want %s", p.Partition, p.Status, p.Reason, want)
		}
	}
	if b.LagSeconds <= 0 {
		t.Fatalf("stuck partition without a time lag: %+v", b)
	}

	// A rewind of a live binding: REWIND, then OK again.
	waitStatus("t1/rewound", lagmon.OK, "before the rewind")
	for status("t1/rewound").Partitions[0].Committed != 40 {
		time.Sleep(mon.Interval())
	}
	running[4].Rewind = &settings.Rewind{ID: 1, Offsets: map[int]int64{0: 0}}
	// A stopped binding: STOP once it has lag and no consumer.
	stopped := append(append([]consumers.Binding(nil), running[:3]...), running[4])
	if err := m.Apply(stopped); err != nil {
		t.Fatal(err)
	}
	waitStatus("t1/rewound", lagmon.REWIND, "rewound")
	c.ProduceToPartitions(msgs("stopped", 0, 5)...)
	b = waitStatus("t1/stopped", lagmon.STOP, "stopped binding")
	if b.Lag != 5 || b.Members != 0 {
		t.Fatalf("stopped binding: %+v", b)
	}
	// Timestamps of records the consumers hold came from them; the stopped
	// binding's from the broker.
	cache, local, broker := mon.TimestampSources()
	if local == 0 || broker == 0 || cache == 0 {
		t.Errorf("timestamps from cache %d, consumers %d, broker %d: want each used", cache, local, broker)
	}
	t.Logf("oldest-record timestamps: %d from the cache, %d from the consumers, %d read from the broker", cache, local, broker)
	if h := mon.History("t1/slow", time.Time{}); len(h[0]) < 10 {
		t.Fatalf("history of the slow binding: %d samples", len(h[0]))
	}

	// The same figures through Prometheus, under kafka_exporter's names.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(mon.Collector())
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"kafka_consumergroup_lag,consumergroup=ember-stopped,partition=0,topic=stopped":            5,
		"kafka_consumergroup_current_offset,consumergroup=ember-stopped,partition=0,topic=stopped": 40,
		"kafka_topic_partition_current_offset,partition=0,topic=stopped":                           45,
		"ember_binding_lag_records,binding=t1/stopped":                                             5,
		"ember_binding_lag_status,binding=t1/stopped,status=STOP":                                  1,
		"ember_binding_lag_status,binding=t1/stopped,status=OK":                                    0,
		"ember_partition_lag_status,binding=t1/stuck,partition=0,status=STALL":                     1,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if v := got["kafka_consumergroup_lag_seconds,consumergroup=ember-stopped,partition=0,topic=stopped"]; v <= 0 {
		t.Errorf("lag seconds of the stopped binding: %v", v)
	}
}

func msgs(topic string, partition, n int) []kafka.Message {
	out := make([]kafka.Message, n)
	for i := range out {
		out[i] = kafka.Message{Topic: topic, Partition: partition, Value: fmt.Appendf(nil, "%d", i)}
	}
	return out
}
