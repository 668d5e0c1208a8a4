package consumers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/consumers/kafkatest"
	"github.com/ember-run/ember/consumers/lagmon"
	"github.com/ember-run/ember/engine/invoke"
)

// call is one Invoke the recording invoker received, decoded.
type call struct {
	inv     invoke.Invocation
	records []events.KafkaRecord
}

// recInvoker is a real Invoker that decodes every payload as the Lambda
// Kafka event and records it; behave decides the outcome of call n (from 0).
type recInvoker struct {
	t      testing.TB
	mu     sync.Mutex
	calls  []call
	behave func(n int, recs []events.KafkaRecord) (invoke.Result, error)
	bad    []string // decode failures
}

func (r *recInvoker) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	var ev events.KafkaEvent
	var recs []events.KafkaRecord
	if err := json.Unmarshal(inv.Payload, &ev); err != nil {
		r.mu.Lock()
		r.bad = append(r.bad, err.Error())
		r.mu.Unlock()
	} else {
		if len(ev.Records) != 1 || ev.EventSource != "SelfManagedKafka" {
			r.mu.Lock()
			r.bad = append(r.bad, fmt.Sprintf("event has %d partitions, source %q", len(ev.Records), ev.EventSource))
			r.mu.Unlock()
		}
		for _, rs := range ev.Records {
			recs = rs
		}
	}
	c := call{inv: *inv, records: recs}
	c.inv.Payload = append([]byte(nil), inv.Payload...)
	r.mu.Lock()
	n := len(r.calls)
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	if r.behave != nil {
		return r.behave(n, recs)
	}
	return invoke.Result{InvocationID: inv.ID, Status: invoke.StatusOK, Payload: []byte(`"ok"`)}, nil
}

func (r *recInvoker) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		r.t.Errorf("invoker could not decode payloads: %v", r.bad)
	}
	return append([]call(nil), r.calls...)
}

// okCalls returns the records of calls for which okFn says the call succeeded.
func recordsOf(calls []call) []events.KafkaRecord {
	var out []events.KafkaRecord
	for _, c := range calls {
		out = append(out, c.records...)
	}
	return out
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

func value(r events.KafkaRecord) string {
	b, _ := base64.StdEncoding.DecodeString(r.Value)
	return string(b)
}

// testOpts are Manager options that make group joins and commits fast.
func testOpts() []consumers.Option {
	return []consumers.Option{
		consumers.WithGroupTimings(time.Second, 100*time.Millisecond, 2*time.Second),
		consumers.WithCommitInterval(50 * time.Millisecond),
		consumers.WithFetchMaxWait(50 * time.Millisecond),
		consumers.WithDrainTimeout(10 * time.Second),
		consumers.WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond),
		consumers.WithLogger(testLogger),
	}
}

// running is a Manager whose Run goroutine the test owns.
type running struct {
	*consumers.Manager
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

// stop cancels Run and waits for it to drain and return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func startManager(t testing.TB, c *kafkatest.Cluster, inv consumers.Invoker, bindings []consumers.Binding, opts ...consumers.Option) *running {
	t.Helper()
	m, err := consumers.New(c.Brokers, inv, append(testOpts(), opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := m.Apply(bindings); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Manager: m, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = m.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return at cleanup")
		}
	})
	return r
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// waitCommitted waits until the binding's group has committed every partition to its end.
func waitCommitted(t testing.TB, m *consumers.Manager, b consumers.Binding, timeout time.Duration) []lagmon.Offsets {
	t.Helper()
	var last []lagmon.Offsets
	var lastErr error
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last, lastErr = m.Lag(ctx, b)
		cancel()
		if lastErr == nil {
			done := true
			for _, p := range last {
				if p.Lag != 0 || p.Committed != p.End {
					done = false
				}
			}
			if done {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed to the end after %s: lag %+v err %v", timeout, last, lastErr)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

func startCluster(t testing.TB) *kafkatest.Cluster {
	return kafkatest.Start(t, embedded.Config{RetentionInterval: -1})
}

func msgsTo(topic string, partition, n int, prefix string, size int) []kafka.Message {
	out := make([]kafka.Message, n)
	for i := range out {
		v := fmt.Sprintf("%s-%d-%d|", prefix, partition, i)
		v += strings.Repeat("x", max(0, size-len(v)))
		out[i] = kafka.Message{Topic: topic, Partition: partition, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(v),
			Headers: []kafka.Header{{Key: "seq", Value: []byte(fmt.Sprint(i))}}}
	}
	return out
}

func header(h []kafka.Header, k string) string {
	for _, x := range h {
		if x.Key == k {
			return string(x.Value)
		}
	}
	return ""
}

// testLogger is silent unless EMBER_TEST_LOG names a level (debug, info...).
var testLogger = func() zerolog.Logger {
	lvl, err := zerolog.ParseLevel(os.Getenv("EMBER_TEST_LOG"))
	if err != nil || os.Getenv("EMBER_TEST_LOG") == "" {
		lvl = zerolog.Disabled
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(lvl).With().Timestamp().Logger()
}()
