package lagmon_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/consumers/kafkatest"
	"github.com/ember-run/ember/consumers/lagmon"
)

// BenchmarkSampleOnce: one sample of 8 bindings of 4 partitions each, every
// partition with lag, as the monitor takes it every --lag-interval. "moved":
// every committed offset moved since the last sample (one Fetch per
// partition for the time lag); "still": none did (timestamps from the
// cache). ns/op at a 1 s interval is the share of one core lag tracking
// takes.
func BenchmarkSampleOnce(b *testing.B) {
	c := kafkatest.Start(b, embedded.Config{RetentionInterval: -1})
	var targets []lagmon.Target
	cl := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 5 * time.Second}
	for i := range 8 {
		topic := fmt.Sprintf("t%d", i)
		c.CreateTopic(topic, 4)
		var msgs []kafka.Message
		for p := range 4 {
			for j := range 1000 {
				msgs = append(msgs, kafka.Message{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d", j)})
			}
		}
		c.ProduceToPartitions(msgs...)
		targets = append(targets, lagmon.Target{Key: "t/" + topic, Topic: topic, Group: "g-" + topic})
	}
	commit := func(off int64) {
		for _, t := range targets {
			offs := map[int]int64{0: off, 1: off, 2: off, 3: off}
			if _, err := cl.OffsetCommit(context.Background(), &kafka.OffsetCommitRequest{GroupID: t.Group, GenerationID: -1,
				Topics: map[string][]kafka.OffsetCommit{t.Topic: {{Partition: 0, Offset: offs[0]}, {Partition: 1, Offset: offs[1]},
					{Partition: 2, Offset: offs[2]}, {Partition: 3, Offset: offs[3]}}}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, mode := range []string{"still", "moved"} {
		b.Run(mode, func(b *testing.B) {
			mon := lagmon.New(cl, lagmon.Config{Targets: func(context.Context) ([]lagmon.Target, error) { return targets, nil }})
			commit(1)
			mon.SampleOnce(context.Background())
			b.ResetTimer()
			for i := range b.N {
				if mode == "moved" {
					b.StopTimer()
					commit(int64(2 + i%900))
					b.StartTimer()
				}
				mon.SampleOnce(context.Background())
			}
			b.StopTimer()
			if bs := mon.Bindings(); len(bs) != 8 || bs[0].Lag == 0 || bs[0].LagSeconds <= 0 {
				b.Fatalf("sample: %+v", bs[0])
			}
		})
	}
}
