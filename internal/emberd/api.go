package emberd

import (
	"context"
	"net/http"
	"time"

	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/internal/apikafka"
)

// apiServer builds the API's HTTP server and the peer server that shares
// its code route.
func (d *Daemon) apiServer() (*http.Server, *http.Server, error) {
	log := d.cfg.Log
	srv, err := api.New(api.Config{
		MetricsToken: d.cfg.MetricsToken,
		Metrics:      d.metrics,
		Logger:       &log,
		Unavailable:  []error{scheduler.ErrUnavailable, scheduler.ErrResourceExhausted, scheduler.ErrNoCapacity},
	}, api.Deps{
		Tenants:  d.tenants,
		Registry: d.registry,
		Code:     d.code,
		Topics:   d.topics,
		Invoker:  d.usage,
		Producer: apikafka.Producer{Topics: d.topics},
		Pool:     d.pool,
		Lag:      lagReader{d},
		Activity: d.stats,
	})
	if err != nil {
		return nil, nil, err
	}
	return &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Synchronous invokes run up to the function's timeout (900 s max).
		WriteTimeout: 16 * time.Minute,
	}, d.peerServer(srv.CodeHandler()), nil
}

// lagReader adapts the consumers' Lag to api.LagReader.
type lagReader struct{ d *Daemon }

var _ api.LagReader = lagReader{}

func (l lagReader) Lag(ctx context.Context, bindingKey string) ([]api.PartitionLag, error) {
	bs, err := l.d.registry.ListBindings(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if b.Key() != bindingKey {
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
