package consumers_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/invoke"
)

// deliveries records, across the processes of one test, which process
// runs each partition and every (key, seq) delivered, in delivery order.
type deliveries struct {
	t       testing.TB
	mu      sync.Mutex
	owner   map[int32]map[string]int // partition -> process -> invocations in flight
	overlap []string
	seqs    map[string][]int // key -> seqs in delivery order
	total   atomic.Int64
}

func newDeliveries(t testing.TB) *deliveries {
	return &deliveries{t: t, owner: map[int32]map[string]int{}, seqs: map[string][]int{}}
}

// invoker returns process name's Invoker.
func (d *deliveries) invoker(name string) consumers.Invoker {
	return &recInvoker{t: d.t, behave: func(_ int, recs []events.KafkaRecord) (invoke.Result, error) {
		p := int32(recs[0].Partition)
		d.mu.Lock()
		if d.owner[p] == nil {
			d.owner[p] = map[string]int{}
		}
		for o, n := range d.owner[p] {
			if o != name && n > 0 {
				d.overlap = append(d.overlap, fmt.Sprintf("partition %d invoked by %s while %s runs it", p, name, o))
			}
		}
		d.owner[p][name]++
		for _, r := range recs {
			var seq int
			fmt.Sscan(value(r), &seq)
			k := string(mustB64(d.t, r.Key))
			d.seqs[k] = append(d.seqs[k], seq)
		}
		d.mu.Unlock()
		time.Sleep(2 * time.Millisecond) // a short handler, so that rebalances find invocations in flight
		d.mu.Lock()
		d.owner[p][name]--
		d.mu.Unlock()
		d.total.Add(int64(len(recs)))
		return ok, nil
	}}
}

// check reports overlaps, missing records and order violations: within a
// key, a delivery may go back (a redelivery after a rebalance starts a new
// pass) but never skip ahead.
func (d *deliveries) check(keys, perKey int) (duplicates int) {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.overlap) > 0 {
		d.t.Fatalf("%d overlaps, first: %s", len(d.overlap), d.overlap[0])
	}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		s := d.seqs[key]
		seen := map[int]bool{}
		prev := -1
		for _, q := range s {
			if q > prev+1 {
				d.t.Fatalf("key %s: seq %d delivered after %d (skipped ahead): %v", key, q, prev, s)
			}
			if seen[q] {
				duplicates++
			}
			seen[q] = true
			prev = q
		}
		if len(seen) != perKey {
			d.t.Fatalf("key %s: %d of %d records delivered", key, len(seen), perKey)
		}
	}
	return duplicates
}

// Two processes share a binding's partitions: one joins mid-stream, then
// the first leaves. Nothing is lost, no partition runs in both at once,
// and no key's records are delivered out of order.
func TestRebalanceAcrossProcesses(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("shared", 4)
	const keys, perKey = 40, 200
	var msgs []kafka.Message
	for i := range keys * perKey {
		k := i % keys
		msgs = append(msgs, kafka.Message{Topic: "shared", Partition: k % 4, Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "%d", i/keys)})
	}
	// Records keep coming while processes join and leave.
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < len(msgs); i += 100 {
			if err := c.TryProduceToPartitions(msgs[i : i+100]...); err != nil {
				produced <- err
				return
			}
			time.Sleep(20 * time.Millisecond) // the producer's pace, not synchronisation
		}
		produced <- nil
	}()
	b := binding("shared", "shared")
	b.Ordering, b.MaxConcurrency, b.BatchSize = settings.OrderKey, 4, 10
	d := newDeliveries(t)
	m1 := startManager(t, c, d.invoker("one"), []consumers.Binding{b})
	waitFor(t, 20*time.Second, "a first share of the records", func() bool { return d.total.Load() >= 1500 })
	m2 := startManager(t, c, d.invoker("two"), []consumers.Binding{b})
	waitFor(t, 20*time.Second, "the second process to own partitions", func() bool { return m2.Stats()["shared"].Partitions > 0 })
	waitFor(t, 20*time.Second, "more records", func() bool { return d.total.Load() >= 4000 })
	m1.stop(t)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the remaining process to own every partition", func() bool { return m2.Stats()["shared"].Partitions == 4 })
	waitCommitted(t, m2.Manager, b, 30*time.Second)
	dups := d.check(keys, perKey)
	t.Logf("%d records delivered, %d duplicates over two rebalances", d.total.Load(), dups)
}

// A rewind on a live binding moves the group once: to explicit offsets,
// then to a timestamp; a restart does not apply it again.
func TestRewindLiveBinding(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("rw", 1)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	msgs := msgsTo("rw", 0, 10, "r", 5)
	for i := range msgs {
		msgs[i].Time = base.Add(time.Duration(i) * time.Minute)
	}
	c.ProduceToPartitions(msgs...)
	b := binding("rw", "rw")
	inv := &recInvoker{t: t}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	count := func() map[int64]int {
		n := map[int64]int{}
		for _, r := range recordsOf(inv.snapshot()) {
			n[r.Offset]++
		}
		return n
	}
	b.Rewind = &settings.Rewind{ID: 1, Offsets: map[int]int64{0: 6}}
	if err := m.Apply([]consumers.Binding{b}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "offsets 6..9 again", func() bool { return count()[9] == 2 })
	waitCommitted(t, m.Manager, b, 20*time.Second)
	b.Rewind = &settings.Rewind{ID: 2, To: base.Add(3 * time.Minute)}
	if err := m.Apply([]consumers.Binding{b}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "offsets 3..9 again", func() bool { return count()[9] == 3 })
	waitCommitted(t, m.Manager, b, 20*time.Second)
	m.stop(t)
	// Same rewind, new process: already applied.
	m2 := startManager(t, c, inv, []consumers.Binding{b})
	waitFor(t, 10*time.Second, "the new process to own the partition", func() bool { return m2.Stats()["rw"].Partitions == 1 })
	c.ProduceToPartitions(msgsTo("rw", 0, 1, "after", 5)...)
	waitCommitted(t, m2.Manager, b, 20*time.Second)
	want := map[int64]int{0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 3, 7: 3, 8: 3, 9: 3, 10: 1}
	if got := count(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("invocations per offset %v, want %v", got, want)
	}
}

// at_timestamp starts at the first record at or after the timestamp.
func TestStartAtTimestamp(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("ts", 1)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	msgs := msgsTo("ts", 0, 10, "t", 5)
	for i := range msgs {
		msgs[i].Time = base.Add(time.Duration(i) * time.Minute)
	}
	c.ProduceToPartitions(msgs...)
	b := binding("ts", "ts")
	b.StartingPosition, b.StartingTimestamp = settings.AtTimestamp, base.Add(5*time.Minute-time.Second)
	inv := &recInvoker{t: t}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	var got []int64
	for _, r := range recordsOf(inv.snapshot()) {
		got = append(got, r.Offset)
	}
	if fmt.Sprint(got) != "[5 6 7 8 9]" {
		t.Fatalf("invoked %v, want [5 6 7 8 9]", got)
	}
}

// Redrive feeds dead-lettered records back as they were; those that fail
// again are dead-lettered anew, after the range.
func TestRedrive(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("rd", 2)
	var msgs []kafka.Message
	for p := range 2 {
		msgs = append(msgs, msgsTo("rd", p, 6, "x", 5)...)
	}
	c.ProduceToPartitions(msgs...)
	b := binding("rd", "rd")
	b.MaxRetryAttempts, b.BatchSize = 0, 1
	var fixed atomic.Bool
	inv := &recInvoker{t: t, behave: func(_ int, recs []events.KafkaRecord) (invoke.Result, error) {
		bad := recs[0].Offset%2 == 1
		if bad && (!fixed.Load() || recs[0].Offset == 5) {
			return failed("Bad"), nil
		}
		return ok, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	waitCommitted(t, m.Manager, b, 20*time.Second)
	if st := m.Stats()["rd"]; st.DLQRecords != 6 {
		t.Fatalf("dead-lettered %d, want 6 (offsets 1, 3, 5 of each partition)", st.DLQRecords)
	}
	before := len(inv.snapshot())
	fixed.Store(true)
	res, err := m.Redrive(t.Context(), b, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Scanned != 6 || res.Redriven != 4 || res.DeadLettered != 2 {
		t.Fatalf("redrive %+v, want 6 scanned, 4 redriven, 2 dead-lettered again", res)
	}
	seen := map[string]string{}
	for _, cl := range inv.snapshot()[before:] {
		r := cl.records[0]
		seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = value(r)
		if r.Topic != "rd" || len(r.Headers) != 1 { // msgsTo's "seq"
			t.Fatalf("redriven record %+v: want the original topic and only its own header", r)
		}
	}
	if len(seen) != 6 || seen["1/3"] != fmt.Sprintf("x-1-3|") {
		t.Fatalf("redriven %v", seen)
	}
	// A second redrive over the same range finds the same six records.
	res2, err := m.Redrive(t.Context(), b, time.Time{}, time.Now())
	if err != nil || res2.Scanned != 8 || res2.Redriven != 4 || res2.DeadLettered != 4 {
		t.Fatalf("second redrive %+v, %v: want the 6 old and 2 new dead-letter records, the 4 of offset 5 failing again", res2, err)
	}
}

// Records that retention removes before the binding reads them are
// counted (and logged) as expired: every record is fetched or expired.
func TestExpiredRecordsCounted(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections() // the broker's Close waits for open connections
	cl := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr}
	if _, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: "exp", NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "200"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	// An hour old: retention removes them as soon as it runs (the test
	// broker runs it only when told). 600 records of 10 KB: more than the
	// partition holds in memory while its first invocation is held (its
	// lane of 256, kafka-go's queue of 100 and a 1 MiB fetch in flight),
	// so that some are still in the log when retention runs.
	var old []kafka.Message
	for range 12 {
		old = append(old, msgsTo("exp", 0, 50, "old", 10_000)...)
	}
	for i := range old {
		old[i].Time = time.Now().Add(-time.Hour)
	}
	for i := 0; i < len(old); i += 50 {
		c.ProduceToPartitions(old[i : i+50]...)
	}
	b := binding("exp", "exp")
	b.BatchSize = 1
	release := make(chan struct{})
	inv := &recInvoker{t: t, behave: func(n int, _ []events.KafkaRecord) (invoke.Result, error) {
		if n == 0 {
			<-release
		}
		return ok, nil
	}}
	m := startManager(t, c, inv, []consumers.Binding{b})
	// The first invocation holds the partition; its lane and reader fill,
	// then the reader stops fetching, far behind the log's end.
	waitFor(t, 10*time.Second, "the first invocation", func() bool { return len(inv.snapshot()) == 1 })
	c.Broker.Cluster().ApplyRetention()
	c.ProduceToPartitions(msgsTo("exp", 0, 10, "new", 5)...)
	close(release)
	waitCommitted(t, m.Manager, b, 20*time.Second)
	st := m.Stats()["exp"]
	if st.Expired == 0 || st.RecordsIn+st.Expired != 610 {
		t.Fatalf("fetched %d + expired %d, want 610 with some expired", st.RecordsIn, st.Expired)
	}
}

// A binding that stops while its JoinGroup waits at the coordinator (for a
// member that does not rejoin) stops at once: kafka-go alone would wait out
// the rebalance timeout before Close returned.
func TestStopWhileJoining(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("joining", 2)
	b := binding("joining", "joining")
	// A plain kafka-go member holds a generation and never finishes it: it
	// does not rejoin when the binding's member asks to join.
	other, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: consumers.DefaultGroupIDPrefix + b.ID, Brokers: c.Brokers, Topics: []string{"joining"},
		SessionTimeout: 30 * time.Second, RebalanceTimeout: time.Minute, HeartbeatInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release); _ = other.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gen, err := other.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen.Start(func(context.Context) { <-release })

	r := startManager(t, c, &recInvoker{t: t}, []consumers.Binding{b},
		consumers.WithGroupTimings(6*time.Second, time.Second, time.Minute))
	admin := &kafka.Client{Addr: kafka.TCP(c.Brokers...)}
	waitFor(t, 20*time.Second, "the binding's JoinGroup to start a rebalance", func() bool {
		resp, err := admin.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{consumers.DefaultGroupIDPrefix + b.ID}})
		return err == nil && len(resp.Groups) == 1 && resp.Groups[0].GroupState == "PreparingRebalance"
	})
	stopped := make(chan struct{})
	began := time.Now()
	go func() { r.cancel(); <-r.done; close(stopped) }()
	select {
	case <-stopped:
		t.Logf("stopped %s after the cancel, the join pending", time.Since(began).Round(time.Millisecond))
	case <-time.After(20 * time.Second): // the join alone would hold it 30 s (the other member's session)
		t.Fatal("the binding did not stop while its JoinGroup was pending")
	}
}

// TestStopWhileRejoiningLeavesTheGroup: a binding stopped while its rejoin
// is pending (cut after the grace) leaves the group at once. kafka-go
// forgets its member id when the cut join fails and leaves nothing: the
// member stayed until the coordinator gave up on it (here until the other
// member's session ran out, 10 s; on the embedded broker, if the join's
// reply is lost, possibly for good - the suspected cause of a replica
// keeping half a binding's partitions after its peers were gone).
func TestStopWhileRejoiningLeavesTheGroup(t *testing.T) {
	c := startCluster(t)
	c.CreateTopic("rejoining", 2)
	b := binding("rejoining", "rejoining")
	group := consumers.DefaultGroupIDPrefix + b.ID
	admin := &kafka.Client{Addr: kafka.TCP(c.Brokers...)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	members := func() []string {
		resp, err := admin.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(resp.Groups) != 1 {
			return nil
		}
		var ids []string
		for _, m := range resp.Groups[0].Members {
			ids = append(ids, m.MemberID)
		}
		return ids
	}
	state := func() string {
		resp, err := admin.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(resp.Groups) != 1 {
			return ""
		}
		return resp.Groups[0].GroupState
	}
	r := startManager(t, c, &recInvoker{t: t}, []consumers.Binding{b},
		consumers.WithGroupTimings(6*time.Second, time.Second, time.Minute))
	waitFor(t, 20*time.Second, "the binding's generation", func() bool { return len(members()) == 1 && state() == "Stable" })
	mine := members()[0]

	// A plain kafka-go member joins, takes its half and never rejoins: the
	// next rebalance waits for it, with the binding's rejoin pending.
	release := make(chan struct{})
	other, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: c.Brokers, Topics: []string{"rejoining"},
		SessionTimeout: 10 * time.Second, RebalanceTimeout: time.Minute, HeartbeatInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); _ = other.Close() })
	gen, err := other.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen.Start(func(context.Context) { <-release })
	waitFor(t, 20*time.Second, "both members stable", func() bool { return len(members()) == 2 && state() == "Stable" })

	// A third member's join starts a rebalance that waits for the blocked one.
	third, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: c.Brokers, Topics: []string{"rejoining"},
		SessionTimeout: 10 * time.Second, RebalanceTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = third.Close() })
	waitFor(t, 20*time.Second, "the rebalance", func() bool { return state() == "PreparingRebalance" && len(members()) == 3 })
	// The binding's heartbeat sees the rebalance: its generation ends and
	// it rejoins, which waits at the coordinator for the blocked member.
	waitFor(t, 20*time.Second, "the binding's generation to end", func() bool {
		return r.Stats()[b.ID].Generation == 0
	})

	began := time.Now()
	r.cancel()
	<-r.done
	if took := time.Since(began); took > 20*time.Second { // the join alone would hold it 70 s (rebalance timeout + 10 s)
		t.Fatalf("the binding took %v to stop while its rejoin was pending", took)
	}
	waitFor(t, 3*time.Second, "the stopped binding's member to leave the group", func() bool {
		ids := members()
		if ids == nil { // not described: nothing to conclude
			return false
		}
		for _, id := range ids {
			if id == mine {
				return false
			}
		}
		return true
	})
}
