package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/api/wire"
)

// produceTo writes msgs, each to the partition its Partition field names.
func (s *stack) produceTo(name string, batchBytes int64, msgs ...kafka.Message) {
	s.t.Helper()
	w := &kafka.Writer{
		Addr: kafka.TCP(s.broker), Topic: topic(name), BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll,
		BatchBytes: batchBytes,
		Balancer:   kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition }),
	}
	defer w.Close()
	if err := w.WriteMessages(s.ctx(), msgs...); err != nil {
		s.t.Fatalf("produce to %s: %v", name, err)
	}
}

// lagOf returns the binding's lag per partition now.
func (s *stack) lagOf(binding string) map[int]int64 {
	s.t.Helper()
	st, err := s.client.Status(s.ctx())
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[int]int64{}
	for _, b := range st.Bindings {
		if b.ID == binding {
			for _, p := range b.LagPartitions() {
				out[p.Partition] = p.Lag
			}
		}
	}
	return out
}

// A record that always fails, retried until it is max_record_age old,
// holds back only its own partition; then it is dead-lettered.
func TestHeadOfLineHoldsOnlyItsPartition(t *testing.T) {
	s := newStack(t, "m128=3")
	s.deploy("picky", "kafka-picky", wire.FunctionConfig{})
	s.createTopic("hol", 4)
	if _, err := s.client.PutBinding(s.ctx(), wire.Binding{ID: "hol", Function: "picky", Topic: "hol",
		StartingPosition: "trim_horizon", BatchSize: 10, MaxRetryAttempts: new(-1), MaxRecordAgeS: 60}); err != nil {
		t.Fatal(err)
	}
	failedAt := time.Now()
	s.produceTo("hol", 0, kafka.Message{Partition: 0, Value: []byte("fail-forever")})
	// Partitions 1-3 keep receiving records; partition 0 holds only the
	// failing one (records behind it would age past 60 s as well).
	deadline := failedAt.Add(2 * time.Minute)
	var worst int64
	for n := 0; ; n++ {
		var msgs []kafka.Message
		for p := 1; p < 4; p++ {
			msgs = append(msgs, kafka.Message{Partition: p, Value: fmt.Appendf(nil, "ok-%d-%d", p, n)})
		}
		s.produceTo("hol", 0, msgs...)
		lag := s.lagOf("hol")
		if n > 4 { // once the binding runs
			for p := 1; p < 4; p++ {
				worst = max(worst, lag[p])
			}
		}
		if lag[0] == 0 && n > 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition 0 still held after %v: lag %v", time.Since(failedAt), lag)
		}
		time.Sleep(500 * time.Millisecond) // the producer's pace, and the status poll
	}
	held := time.Since(failedAt)
	if held < 60*time.Second {
		t.Fatalf("the failing record was released after %v, before its max age of 60s", held)
	}
	if worst > 20 {
		t.Fatalf("other partitions lagged up to %d records behind the failing one", worst)
	}
	dlq := s.readTopic("hol.dlq")
	if len(dlq) != 1 || string(dlq[0].Value) != "fail-forever" ||
		header(dlq[0].Headers, consumers.HeaderErrorType) != consumers.ErrorTypeMaxRecordAge {
		t.Fatalf("dead-letter topic: %d records, first %q", len(dlq), dlq[0].Value)
	}
	t.Logf("held %v; other partitions' lag at most %d", held.Round(time.Second), worst)
}

func header(h []kafka.Header, k string) string {
	for _, x := range h {
		if x.Key == k {
			return string(x.Value)
		}
	}
	return ""
}

// Partial batch responses, bisect on error, a 5 MiB batch and a 5 MiB
// response, against a real function: each record is handled or
// dead-lettered, none is stuck.
func TestErrorControlsEndToEnd(t *testing.T) {
	s := newStack(t, "m128=3")
	// A 5 MiB event takes the function a while on a loaded 2-core machine:
	// the default 3 s timeout would dead-letter it as a timeout.
	s.deploy("picky", "kafka-picky", wire.FunctionConfig{TimeoutMs: 30000})
	s.deploy("picky-partial", "kafka-picky", wire.FunctionConfig{TimeoutMs: 30000, Env: map[string]string{"PARTIAL": "1"}})
	s.createTopic("ctl", 1)
	s.createTopic("big", 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "2097152"})
	bind := func(b wire.Binding) {
		t.Helper()
		b.StartingPosition = "trim_horizon"
		if _, err := s.client.PutBinding(s.ctx(), b); err != nil {
			t.Fatal(err)
		}
	}
	bind(wire.Binding{ID: "partial", Function: "picky-partial", Topic: "ctl", ReportBatchItemFailures: true,
		MaxRetryAttempts: new(1), BatchWindowMs: 200, DLQTopic: "partial.dlq"})
	bind(wire.Binding{ID: "bisect", Function: "picky", Topic: "ctl", BisectOnError: true,
		MaxRetryAttempts: new(0), BatchWindowMs: 200, DLQTopic: "bisect.dlq"})
	var msgs []kafka.Message
	for i := range 16 {
		v := fmt.Sprintf("ok-%d", i)
		if i == 5 || i == 11 {
			v = fmt.Sprintf("fail-%d", i)
		}
		msgs = append(msgs, kafka.Message{Value: []byte(v)})
	}
	s.produceTo("ctl", 0, msgs...)

	// Four 1 MiB records (a 5.3 MiB event) and a record asking for a 5 MiB
	// response: without a result topic all are handled; with one, the
	// response is too large for it and is dead-lettered.
	bind(wire.Binding{ID: "big", Function: "picky", Topic: "big", MaxRetryAttempts: new(0), DLQTopic: "big.dlq"})
	bind(wire.Binding{ID: "bigres", Function: "picky", Topic: "big", MaxRetryAttempts: new(0), DLQTopic: "bigres.dlq",
		ResultTopic: "bigres.out", BatchSize: 1}) // a batch's response is one: only the big one fails
	var big []kafka.Message
	for i := range 4 {
		big = append(big, kafka.Message{Value: []byte(fmt.Sprintf("mb-%d-", i) + strings.Repeat("m", 1<<20))})
	}
	big = append(big, kafka.Message{Value: []byte("big:5242880")})
	s.produceTo("big", 3<<19, big...) // one 1 MiB record per request: the topic takes 2 MiB

	s.waitNoLag("partial", 16, 2*time.Minute)
	s.waitNoLag("bisect", 16, 2*time.Minute)
	s.waitNoLag("big", 5, 2*time.Minute)
	s.waitNoLag("bigres", 5, 2*time.Minute)
	for _, c := range []struct{ dlq, want string }{
		{"partial.dlq", "[fail-11 fail-5]"}, {"bisect.dlq", "[fail-11 fail-5]"}, {"bigres.dlq", "[big:5242880]"},
	} {
		var got []string
		for _, m := range s.readTopic(c.dlq) {
			got = append(got, string(m.Value[:min(len(m.Value), 16)]))
		}
		if fmt.Sprint(sorted(got)) != c.want {
			t.Errorf("%s holds %v, want %s", c.dlq, got, c.want)
		}
	}
	if dlq := s.readTopic("bigres.dlq"); len(dlq) == 1 &&
		header(dlq[0].Headers, consumers.HeaderErrorType) != consumers.ErrorTypeResponseTooLarge {
		t.Errorf("big response dead-lettered as %q", header(dlq[0].Headers, consumers.HeaderErrorType))
	}
	st, err := s.client.Status(s.ctx())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Bindings {
		if b.ID == "big" && (b.Activity == nil || b.Activity.DeadLettered != 0 || b.Activity.Records != 5) {
			var why []string
			for _, m := range s.readTopic("big.dlq") {
				why = append(why, header(m.Headers, consumers.HeaderErrorType)+": "+header(m.Headers, consumers.HeaderReason))
			}
			t.Errorf("binding big: %+v, want its 5 records handled and none dead-lettered; big.dlq: %q", b.Activity, why)
		}
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
