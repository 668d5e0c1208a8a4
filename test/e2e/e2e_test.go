package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/hostagent"
	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/sandbox"
	"github.com/ember-run/ember/internal/testenv"
)

// echoResponse is what examples/kafka-echo returns.
type echoResponse struct {
	Records int      `json:"records"`
	IDs     []string `json:"ids"`
}

// seen counts each record id in a result topic.
func seen(t *testing.T, results []kafka.Message) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range results {
		var r echoResponse
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatalf("result %q: %v", m.Value, err)
		}
		if r.Records != len(r.IDs) {
			t.Fatalf("result says %d records but lists %d ids", r.Records, len(r.IDs))
		}
		for _, id := range r.IDs {
			out[id]++
		}
	}
	return out
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("id-%d", i)
	}
	return out
}

func bindEcho(t *testing.T, s *stack, id, topic string, batch int) {
	t.Helper()
	_, err := s.client.PutBinding(s.ctx(), wire.Binding{
		ID: id, Function: "echo", Topic: topic, BatchSize: batch,
		StartingPosition: "earliest", ResultTopic: topic + ".results",
	})
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
}

// TestEndToEnd: 2,000 events over 4 partitions reach an unmodified
// aws-lambda-go function, every record id comes back through the result
// topic, and every partition's committed offset reaches its end.
func TestEndToEnd(t *testing.T) {
	s := newStack(t, "m128=4")
	s.deploy("echo", "kafka-echo", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000})
	s.createTopic("orders", 4)
	bindEcho(t, s, "orders", "orders", 100)
	want := ids(2000)
	s.produce("orders", want, 0)

	parts := s.waitNoLag("orders", 2000, 2*time.Minute)
	if len(parts) != 4 {
		t.Fatalf("lag reported for %d partitions, want 4", len(parts))
	}
	for _, p := range parts {
		if p.End != 500 || p.Committed != p.End {
			t.Errorf("partition %d: end %d committed %d, want 500/500", p.Partition, p.End, p.Committed)
		}
	}
	// The instances, together, weigh more than the host's other processes
	// (hostagent.Config.InstancesCPUShares).
	if b, err := os.ReadFile(filepath.Join(cgroup.Root, "cpu", sandbox.CgroupParent, "cpu.shares")); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(hostagent.DefaultInstancesCPUShares) {
		t.Errorf("the instances' cpu.shares: %q (%v), want %d", b, err, hostagent.DefaultInstancesCPUShares)
	}
	got := seen(t, s.readTopic("orders.results"))
	dups := 0
	for _, id := range want {
		switch n := got[id]; {
		case n == 0:
			t.Errorf("record %s never processed", id)
		case n > 1:
			dups += n - 1
		}
	}
	if len(got) != len(want) {
		t.Errorf("results hold %d distinct ids, want %d", len(got), len(want))
	}
	t.Logf("2000 records processed, %d duplicates", dups)

	st, err := s.client.Status(s.ctx())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Bindings {
		if b.ID == "orders" {
			if b.Activity == nil || b.Activity.Records < 2000 || b.Activity.HotStarts == 0 {
				t.Errorf("activity %+v: want >= 2000 records and hot starts", b.Activity)
			}
			t.Logf("activity: %+v", *b.Activity)
		}
	}
	s.checkLagViews(t, "orders", 4)
}

// checkLagViews checks a drained binding's lag through the API (status OK,
// nothing behind, a history per partition), its absence for another
// tenant, and the same figures in /metrics under kafka_exporter's names.
func (s *stack) checkLagViews(t *testing.T, binding string, partitions int) {
	t.Helper()
	var h wire.LagHistory
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if h, err = s.client.BindingLag(s.ctx(), binding, time.Hour); err != nil {
			t.Fatal(err)
		}
		if h.Lag.Status == "OK" && h.Lag.Records == 0 && len(h.History) == partitions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag of a drained binding: %+v", h)
		}
		time.Sleep(100 * time.Millisecond) // the monitor samples every 500 ms
	}
	if h.Lag.Seconds != 0 || len(h.Lag.Partitions) != partitions || len(h.History[0].Points) == 0 {
		t.Fatalf("lag of a drained binding: %+v", h)
	}
	if _, err := s.tenantClient("lag-snoop").BindingLag(s.ctx(), binding, 0); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("another tenant read the binding's lag: %v", err)
	}
	// The monitor samples every 500 ms: /metrics shows its last sample.
	var body []byte
	for deadline := time.Now().Add(10 * time.Second); ; {
		body = scrape(t, s)
		if strings.Contains(string(body), fmt.Sprintf(`ember_binding_lag_records{binding="%s/%s"} 0`, tenant, binding)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the next sample
	}
	for _, want := range []string{
		fmt.Sprintf(`kafka_consumergroup_lag{consumergroup="ember.%s.%s",partition="0",topic="%s"} 0`, tenant, binding, topic(binding)),
		fmt.Sprintf(`ember_binding_lag_status{binding="%s/%s",status="OK"} 1`, tenant, binding),
		fmt.Sprintf(`ember_binding_event_to_commit_seconds_count{binding="%s/%s"}`, tenant, binding),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestCrashLosesNothing kills emberd (consumers, scheduler, agent and the
// embedded broker in one process) with SIGKILL mid-stream and starts it
// again: every record is processed at least once.
func TestCrashLosesNothing(t *testing.T) {
	s := newStack(t, "m128=4")
	s.deploy("echo", "kafka-echo", wire.FunctionConfig{
		MemoryMB: 128, TimeoutMs: 10000, Env: map[string]string{"EXAMPLE_DELAY_MS": "20"},
	})
	s.createTopic("events", 4)
	want := ids(2000)
	s.produce("events", want, 0)
	bindEcho(t, s, "events", "events", 10)

	// Let it get going, then crash it while work remains.
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := s.client.Status(s.ctx())
		if err == nil && len(st.Bindings) == 1 && st.Bindings[0].Activity != nil && st.Bindings[0].Activity.Records >= 200 {
			var lag int64
			for _, p := range st.Bindings[0].LagPartitions() {
				lag += p.Lag
			}
			if lag == 0 {
				t.Fatal("all records were done before the crash: the test did not crash mid-stream")
			}
			t.Logf("killing emberd after %d records, lag %d", st.Bindings[0].Activity.Records, lag)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the crash (%v)\n%s", err, s.log())
		}
		time.Sleep(20 * time.Millisecond) // polling progress
	}
	s.kill()
	s.start()

	s.waitNoLag("events", 2000, 3*time.Minute)
	got := seen(t, s.readTopic("events.results"))
	dups := 0
	for _, id := range want {
		switch n := got[id]; {
		case n == 0:
			t.Errorf("record %s lost", id)
		case n > 1:
			dups += n - 1
		}
	}
	t.Logf("after SIGKILL and restart: 2000 records processed, %d duplicates (at-least-once)", dups)
}

// TestRedisKillLosesNothing kills Redis (-9) in the middle of a stream at
// 200 events/s and starts it again two seconds later: with AOF persistence
// no tenant, function or binding is lost, emberd reconnects by itself and
// every record is processed.
func TestRedisKillLosesNothing(t *testing.T) {
	rs := testenv.StartRedis(t, true)
	s := newStackWithRedis(t, rs.Addr, "m128=4")
	produced := startStream(t, s, 1400) // 7 s at 200/s
	// The outage is the scenario: Redis is down for 2 s from the 2nd second.
	time.Sleep(2 * time.Second)
	rs.Kill()
	t.Log("redis killed")
	time.Sleep(2 * time.Second)
	rs.Start()
	t.Log("redis restarted")
	<-produced
	checkStream(t, s, 1400)
}

// TestRedisFailoverLosesNothing runs Ember on a replicated Redis watched by
// three sentinels and SIGKILLs the primary in the middle of a stream at
// 200 events/s: the sentinels promote the replica, emberd and its agent
// follow it by themselves, every record is processed, and tenants,
// functions, bindings and agents are all still there.
func TestRedisFailoverLosesNothing(t *testing.T) {
	rs := testenv.StartSentinels(t)
	s := newStackWithRedis(t, rs.URL, "m128=4")
	produced := startStream(t, s, 1400)
	time.Sleep(2 * time.Second) // the scenario: the primary dies 2 s into the stream
	rs.Primary.Kill()
	t.Log("primary killed")
	deadline := time.Now().Add(time.Minute)
	for {
		a, err := rs.PrimaryAddr(s.ctx())
		if err == nil && a == rs.Replica.Addr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sentinels did not promote the replica: %q, %v", a, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the sentinels
	}
	t.Log("replica promoted")
	<-produced
	checkStream(t, s, 1400)
}

// startStream deploys echo, binds it to a 4-partition topic "stream" and
// produces n records to it at 200/s, straight to the broker, like a live
// producer. The channel closes when all are produced.
func startStream(t *testing.T, s *stack, n int) <-chan struct{} {
	s.deploy("echo", "kafka-echo", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000})
	s.createTopic("stream", 4)
	bindEcho(t, s, "stream", "stream", 10)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		w := &kafka.Writer{Addr: kafka.TCP(s.broker), Topic: topic("stream"), Balancer: &kafka.RoundRobin{},
			BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
		defer w.Close()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for _, id := range ids(n) {
			<-tick.C
			if err := w.WriteMessages(context.Background(), kafka.Message{Value: []byte(id)}); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}()
	return produced
}

// checkStream waits until the stream binding has handled all n records and
// checks that each came back, and that the tenant, its function and
// binding, and the agent are still known.
func checkStream(t *testing.T, s *stack, n int) {
	s.waitNoLag("stream", int64(n), 3*time.Minute)
	got := seen(t, s.readTopic("stream.results"))
	for _, id := range ids(n) {
		if got[id] == 0 {
			t.Errorf("record %s lost", id)
		}
	}
	fs, err := s.client.ListFunctions(s.ctx())
	if err != nil || len(fs) != 1 || fs[0].Name != "echo" {
		t.Errorf("functions after the outage: %+v, %v", fs, err)
	}
	bs, err := s.client.ListBindings(s.ctx())
	if err != nil || len(bs) != 1 || bs[0].ID != "stream" {
		t.Errorf("bindings after the outage: %+v, %v", bs, err)
	}
	ts, err := s.admin.ListTenants(s.ctx())
	if err != nil || len(ts) != 1 || ts[0].Name != tenant {
		t.Errorf("tenants after the outage: %+v, %v", ts, err)
	}
	st, err := s.admin.Status(s.ctx())
	if err != nil || len(st.Agents) != 1 {
		t.Errorf("agents after the outage: %+v, %v", st.Agents, err)
	}
}
