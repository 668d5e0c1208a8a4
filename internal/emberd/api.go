package emberd

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/scheduler"
)

func (d *Daemon) apiServer() (*http.Server, error) {
	log := d.cfg.Log
	srv, err := api.New(api.Config{
		Token:       d.cfg.APIToken,
		Metrics:     d.metrics,
		Logger:      &log,
		Unavailable: []error{scheduler.ErrUnavailable, scheduler.ErrResourceExhausted, scheduler.ErrNoCapacity},
	}, api.Deps{
		Registry: d.registry,
		Code:     d.code,
		Invoker:  d.usage,
		Producer: producer{d.writer},
		Pool:     d.pool,
		Lag:      lagReader{d},
		Activity: d.stats,
	})
	if err != nil {
		return nil, err
	}
	return &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Synchronous invokes run up to the function's timeout (900 s max).
		WriteTimeout: 16 * time.Minute,
	}, nil
}

// producer adapts a kafka-go Writer to api.Producer.
type producer struct{ w *kafka.Writer }

var _ api.Producer = producer{}

func (p producer) Produce(ctx context.Context, topic string, recs []api.Record) error {
	msgs := make([]kafka.Message, len(recs))
	now := time.Now()
	for i, r := range recs {
		m := kafka.Message{Topic: topic, Key: r.Key, Value: r.Value, Time: now}
		for k, v := range r.Headers {
			m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)})
		}
		msgs[i] = m
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d records to %q: %w", len(recs), topic, err)
	}
	return nil
}

// lagReader adapts the consumers' Lag to api.LagReader.
type lagReader struct{ d *Daemon }

var _ api.LagReader = lagReader{}

func (l lagReader) Lag(ctx context.Context, bindingID string) ([]api.PartitionLag, error) {
	bs, err := l.d.registry.ListBindings(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if b.ID != bindingID {
			continue
		}
		lags, err := l.d.cons.Lag(ctx, consumerBinding(b))
		if err != nil {
			return nil, err
		}
		out := make([]api.PartitionLag, len(lags))
		for i, pl := range lags {
			out[i] = api.PartitionLag{Partition: pl.Partition, End: pl.End, Committed: pl.Committed, Lag: pl.Lag}
		}
		return out, nil
	}
	return nil, nil
}
