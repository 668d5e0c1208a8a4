package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// replicaSet is several emberd processes, each with its own agent, sharing
// one Redis, one Kafka broker and one authority: one Ember installation
// with several replicas.
type replicaSet struct {
	t         testing.TB
	redis     *testenv.RedisServer
	broker    string
	pkiDir    string
	pool      string
	tenantKey string
}

func newReplicaSet(t testing.TB, pool string) *replicaSet {
	t.Helper()
	b, err := embedded.Start(embedded.Config{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	dir, err := os.MkdirTemp("", "ember-e2e-pki-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return &replicaSet{t: t, redis: testenv.StartRedis(t, false), broker: b.Addrs()[0], pkiDir: dir, pool: pool}
}

// add starts one more replica and returns it, with a client acting as the
// e2e tenant (created by the first replica).
func (r *replicaSet) add() *stack {
	r.t.Helper()
	s := startStack(r.t, r.redis.Addr, r.pool, r.broker, "--brokers", r.broker, "--pki-dir", r.pkiDir)
	if r.tenantKey == "" {
		s.client = s.tenantClient(tenant)
		r.tenantKey = s.tenantKey
		return s
	}
	c, err := client.New("http://"+s.api, client.WithAPIKey(r.tenantKey))
	if err != nil {
		r.t.Fatal(err)
	}
	s.client, s.tenantKey = c, r.tenantKey
	return s
}

// echoed is one kafka-echo response on the result topic.
type echoed struct {
	IDs     []string `json:"ids"`
	Started int64    `json:"started"`
}

// checkKeyed reads the results of a binding fed "k<key>/<seq>" values and
// checks that every (key, seq) was delivered and that, per key in the
// order the handler started, a delivery never skips ahead (a redelivery
// after a rebalance may go back: a new pass). It returns the duplicates.
func checkKeyed(t testing.TB, results []kafka.Message, keys, perKey int) int {
	t.Helper()
	var batches []echoed
	for _, m := range results {
		var e echoed
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatalf("result %q: %v", m.Value, err)
		}
		batches = append(batches, e)
	}
	slices.SortFunc(batches, func(a, b echoed) int { return int(a.Started - b.Started) })
	last := map[string]int{}
	seen := map[string]bool{}
	dups := 0
	for _, b := range batches {
		for _, id := range b.IDs {
			k, seqS, _ := strings.Cut(id, "/")
			seq, _ := strconv.Atoi(seqS)
			prev, ok := last[k]
			if !ok {
				prev = -1
			}
			if seq > prev+1 {
				t.Fatalf("key %s: seq %d delivered after %d: skipped ahead", k, seq, prev)
			}
			last[k] = seq
			if seen[id] {
				dups++
			}
			seen[id] = true
		}
	}
	if len(seen) != keys*perKey {
		t.Fatalf("%d of %d records delivered", len(seen), keys*perKey)
	}
	return dups
}

// produceKeyed writes perKey records for each of keys keys, keyed, at a
// steady pace, reporting progress in sent; it returns when all are
// acknowledged (or on the first error).
func produceKeyed(broker, topic string, keys, perKey int, pace time.Duration, sent *atomic.Int64) error {
	tr := &kafka.Transport{} // its own: the default one's metadata may predate the topic
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Hash{}, Transport: tr,
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	const chunk = 200
	var msgs []kafka.Message
	for seq := range perKey {
		for k := range keys {
			msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "k%d/%d", k, seq)})
		}
	}
	for len(msgs) > 0 {
		n := min(chunk, len(msgs))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := w.WriteMessages(ctx, msgs[:n]...)
		cancel()
		if err != nil {
			return err
		}
		sent.Add(int64(n))
		msgs = msgs[n:]
		time.Sleep(pace) // the producer's rate, not synchronisation
	}
	return nil
}

// Three replicas share a key-ordered binding of 8 partitions while 20,000
// keyed records stream in: a replica joins, one is SIGKILLed, one stops.
// Every record is delivered, no key is ever delivered out of order within
// a pass, and the package deployed through one replica runs on the others'
// agents.
func TestReplicasShareABinding(t *testing.T) {
	r := newReplicaSet(t, "m128=3")
	a := r.add()
	b := r.add()
	a.deploy("echo", "kafka-echo", wire.FunctionConfig{})
	a.createTopic("keyed", 8)
	if _, err := a.client.PutBinding(a.ctx(), wire.Binding{ID: "keyed", Function: "echo", Topic: "keyed",
		StartingPosition: "trim_horizon", Ordering: "key", MaxConcurrency: 4, BatchSize: 50,
		ResultTopic: "keyed.results"}); err != nil {
		t.Fatal(err)
	}
	const keys, perKey = 200, 100
	var sent atomic.Int64
	produced := make(chan error, 1)
	go func() { produced <- produceKeyed(r.broker, topic("keyed"), keys, perKey, 40*time.Millisecond, &sent) }()
	waitSent := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for sent.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d records produced", sent.Load())
			}
			time.Sleep(20 * time.Millisecond) // polling the producer's progress
		}
	}
	waitSent(keys * perKey / 4)
	c := r.add()
	waitSent(keys * perKey / 2)
	a.kill()
	waitSent(keys * perKey * 3 / 4)
	b.stop()
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	c.waitNoLag("keyed", keys*perKey, 3*time.Minute)
	dups := checkKeyed(t, c.readTopic("keyed.results"), keys, perKey)
	t.Logf("%d records, %d delivered twice (a SIGKILLed replica's unfinished batches)", keys*perKey, dups)
	st, err := c.client.Status(c.ctx())
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range st.Bindings {
		if bs.ID == "keyed" && (bs.Activity == nil || bs.Activity.Partitions != 8 || bs.Activity.Expired != 0) {
			t.Fatalf("the last replica's consumer: %+v", bs.Activity)
		}
	}
}
