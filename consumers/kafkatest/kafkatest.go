package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/embedded"
)

// MinSessionTimeout is the group session timeout floor the test broker
// accepts, low so that tests do not wait 6 s for rebalances.
const MinSessionTimeout = 500 * time.Millisecond

// Cluster is a running test broker.
type Cluster struct {
	Broker  *embedded.Broker
	Brokers []string
	t       testing.TB
	writer  *kafka.Writer
	// transport is this cluster's own: kafka-go's default transport caches
	// connections and metadata per address, and a later test's broker can
	// reuse an earlier one's port.
	transport *kafka.Transport
}

// Start starts a one-broker cluster that is closed when the test ends.
// cfg may be the zero value; MinSessionTimeout defaults to MinSessionTimeout.
func Start(t testing.TB, cfg embedded.Config) *Cluster {
	t.Helper()
	if cfg.MinSessionTimeout == 0 {
		cfg.MinSessionTimeout = MinSessionTimeout
	}
	b, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	c := &Cluster{Broker: b, Brokers: b.Addrs(), t: t, transport: &kafka.Transport{}}
	c.writer = &kafka.Writer{
		Addr:         kafka.TCP(c.Brokers...),
		Transport:    c.transport,
		Balancer:     &kafka.Hash{},
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    1000,
		RequiredAcks: kafka.RequireAll,
	}
	t.Cleanup(func() {
		_ = c.writer.Close()
		c.transport.CloseIdleConnections()
		b.Close()
	})
	return c
}

// CreateTopic creates topic with the given number of partitions.
func (c *Cluster) CreateTopic(topic string, partitions int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: c.transport}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err != nil {
		c.t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		c.t.Fatalf("create topic %s: %v", topic, err)
	}
}

// Produce writes msgs synchronously (acks=all). A message with Partition set
// to a value >= 0 and WithPartition used goes to that partition; otherwise
// the key hash picks it.
func (c *Cluster) Produce(msgs ...kafka.Message) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.writer.WriteMessages(ctx, msgs...); err != nil {
		c.t.Fatalf("produce %d messages: %v", len(msgs), err)
	}
}

// ProduceToPartitions writes msgs, each to its own Partition field, using a
// writer that honours the partition.
func (c *Cluster) ProduceToPartitions(msgs ...kafka.Message) {
	c.t.Helper()
	if err := c.TryProduceToPartitions(msgs...); err != nil {
		c.t.Fatal(err)
	}
}

// TryProduceToPartitions is ProduceToPartitions returning its error, for
// goroutines other than the test's.
func (c *Cluster) TryProduceToPartitions(msgs ...kafka.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &kafka.Writer{
		Addr:         kafka.TCP(c.Brokers...),
		Transport:    c.transport,
		Balancer:     partitionField{},
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    1000,
		RequiredAcks: kafka.RequireAll,
	}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d messages: %w", len(msgs), err)
	}
	return nil
}

// partitionField routes a message to the partition named in its Partition
// field (kafka-go's Writer ignores that field otherwise).
type partitionField struct{}

func (partitionField) Balance(msg kafka.Message, partitions ...int) int {
	for _, p := range partitions {
		if p == msg.Partition {
			return p
		}
	}
	return partitions[0]
}

// ReadAll reads every record currently in topic (all partitions, from the
// first offset up to the end offset at the time of the call).
func (c *Cluster) ReadAll(topic string) []kafka.Message {
	c.t.Helper()
	msgs, err := ReadAll(c.Brokers, topic)
	if err != nil {
		c.t.Fatalf("read %s: %v", topic, err)
	}
	return msgs
}

// ReadAll reads every record currently in topic from brokers. It uses a
// transport of its own, since a kafka-go Transport caches metadata for 6s.
func ReadAll(brokers []string, topic string) ([]kafka.Message, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	return readAll(brokers, tr, topic)
}

func readAll(brokers []string, tr *kafka.Transport, topic string) ([]kafka.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("metadata %s: %v", topic, md.Topics)
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	var out []kafka.Message
	for _, p := range md.Topics[0].Partitions {
		lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			topic: {kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID)},
		}})
		if err != nil {
			return nil, fmt.Errorf("list offsets %s/%d: %w", topic, p.ID, err)
		}
		po := lo.Topics[topic][0]
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			_ = r.Close()
			return nil, err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				return nil, fmt.Errorf("read %s/%d: %w", topic, p.ID, err)
			}
			out = append(out, m)
			if m.Offset+1 >= po.LastOffset {
				break
			}
		}
		_ = r.Close()
	}
	return out, nil
}
