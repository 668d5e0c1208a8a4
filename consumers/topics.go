package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topics creates and deletes Kafka topics and produces records to them,
// for the API and emberd's own topics. It never creates a topic by
// producing to it: Ember creates topics explicitly, in the namespace of
// the tenant that asked. It is safe for concurrent use.
type Topics struct {
	client *kafka.Client
	writer *kafka.Writer
}

// NewTopics returns a Topics over brokers, connected as conn says. Close
// it when done.
func NewTopics(brokers []string, conn Conn) (*Topics, error) {
	if len(brokers) == 0 {
		return nil, errors.New("consumers: no brokers")
	}
	tr := conn.Transport()
	return &Topics{
		client: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second},
		writer: &kafka.Writer{
			Addr:      kafka.TCP(brokers...),
			Transport: tr,
			Balancer:  &kafka.Hash{},
			// kafka-go's default of 1 s would add up to 1 s per produce.
			BatchTimeout: time.Millisecond,
			RequiredAcks: kafka.RequireAll,
			// The API accepts records up to its payload limit (6 MiB).
			BatchBytes: 16 << 20,
		},
	}, nil
}

// CreateTopic creates name with partitions partitions (-1: the broker's
// default). A topic that exists already is success.
func (t *Topics) CreateTopic(ctx context.Context, name string, partitions int) error {
	resp, err := t.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: -1,
	}}})
	if err != nil {
		return fmt.Errorf("create topic %q: %w", name, err)
	}
	if err := resp.Errors[name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		for _, refused := range []error{kafka.InvalidTopic, kafka.InvalidPartitionNumber, kafka.InvalidReplicationFactor,
			kafka.InvalidConfiguration, kafka.PolicyViolation} {
			if errors.Is(err, refused) {
				return fmt.Errorf("create topic %q: %w: %w", name, ErrTopicRefused, err)
			}
		}
		return fmt.Errorf("create topic %q: %w", name, err)
	}
	return nil
}

// ErrTopicRefused wraps the broker's refusal of a topic as asked (its name,
// for instance one that collides with another once '.' and '_' are
// confused, or its partitions): the request's fault, not the broker's.
var ErrTopicRefused = errors.New("the broker refused the topic")

// DeleteTopic deletes name; a missing topic is success.
func (t *Topics) DeleteTopic(ctx context.Context, name string) error {
	resp, err := t.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	if err != nil {
		return fmt.Errorf("delete topic %q: %w", name, err)
	}
	if err := resp.Errors[name]; err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
		return fmt.Errorf("delete topic %q: %w", name, err)
	}
	return nil
}

// Produce writes msgs (each with its Topic set) and returns once every one
// is acknowledged by all in-sync replicas.
func (t *Topics) Produce(ctx context.Context, msgs ...kafka.Message) error {
	return t.writer.WriteMessages(ctx, msgs...)
}

// Close flushes and closes the producer.
func (t *Topics) Close() error { return t.writer.Close() }
