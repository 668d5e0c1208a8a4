// Package apikafka connects the HTTP API to Kafka: Producer adapts the
// consumers' Topics to api.Producer, so that the API's records become
// Kafka messages without the engine knowing Kafka's types.
package apikafka

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/api"
)

// Producer produces the API's records through Topics.
type Producer struct{ Topics *consumers.Topics }

var _ api.Producer = Producer{}

// Produce implements api.Producer: every record gets the current time as
// its timestamp, and Produce returns once all are acknowledged.
func (p Producer) Produce(ctx context.Context, topic string, recs []api.Record) error {
	msgs := make([]kafka.Message, len(recs))
	now := time.Now()
	for i, r := range recs {
		m := kafka.Message{Topic: topic, Key: r.Key, Value: r.Value, Time: now}
		for k, v := range r.Headers {
			m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)})
		}
		msgs[i] = m
	}
	if err := p.Topics.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d records to %q: %w", len(recs), topic, err)
	}
	return nil
}
