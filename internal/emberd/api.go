package emberd

import (
	"context"
	"net/http"
	"time"

	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/predict"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/internal/apikafka"
)

// apiServer builds the API's HTTP server and the peer server that shares
// its code route.
func (d *Daemon) apiServer() (*http.Server, *http.Server, error) {
	log := d.cfg.Log
	srv, err := api.New(api.Config{
		MetricsToken: d.cfg.MetricsToken,
		GatewayURL:   d.cfg.GatewayURL,
		Metrics:      d.metrics,
		Logger:       &log,
		Unavailable:  []error{scheduler.ErrUnavailable, scheduler.ErrResourceExhausted, scheduler.ErrNoCapacity},
	}, api.Deps{
		Tenants:   d.tenants,
		Registry:  d.registry,
		Code:      d.code,
		Topics:    d.topics,
		Invoker:   d.usage,
		Producer:  apikafka.Producer{Topics: d.topics},
		Pool:      d.pool,
		Waiting:   d.sched.WaitingFor,
		WaitTimes: d.sched.WaitTimes,
		Lag:       lagReader{d},
		Activity:  activity{d},
		Usage:     d.usage,
		Async:     d.async,
		Redriver:  redriver{d},
		Replicas:  d.peers,
		Preloader: d.sched,
		Profiles:  profiles{d.predict},
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

// activity adds the consumers' counters of this emberd to the invocation
// summary.
type activity struct{ d *Daemon }

var _ api.ActivityReader = activity{}

func (a activity) Activity(bindingKey string) (wire.Activity, bool) {
	out, ok := a.d.stats.Activity(bindingKey)
	st, running := a.d.cons.Stats()[bindingKey]
	if !running {
		return out, ok
	}
	out.Filtered, out.Expired, out.DeadLettered, out.AgeDropped = st.Filtered, st.Expired, st.DLQRecords, st.AgeDropped
	out.InFlight, out.Partitions, out.Generation = st.InFlight, st.Partitions, st.Generation
	out.Rebalances = st.Rebalances
	// Platform failures of dead-letter and result writes are the
	// consumers' own; the observer counted the Invoke ones.
	out.PlatformErrors = max(out.PlatformErrors, st.PlatformErrors)
	return out, true
}

// redriver adapts the consumers' Redrive to api.Redriver.
type redriver struct{ d *Daemon }

var _ api.Redriver = redriver{}

func (r redriver) Redrive(ctx context.Context, b registry.Binding, from, to time.Time) (wire.RedriveResult, error) {
	res, err := r.d.cons.Redrive(ctx, consumerBinding(b), from, to)
	return wire.RedriveResult{Scanned: res.Scanned, Redriven: res.Redriven, DeadLettered: res.DeadLettered}, err
}

func (r redriver) DeadLetters(ctx context.Context, b registry.Binding, limit int) ([]wire.DeadLetter, error) {
	dls, err := r.d.cons.DeadLetters(ctx, consumerBinding(b), limit)
	out := make([]wire.DeadLetter, len(dls))
	for i, dl := range dls {
		out[i] = wire.DeadLetter{At: dl.At, Partition: dl.Partition, Offset: dl.Offset, Reason: dl.Reason,
			ErrorType: dl.ErrorType, Status: dl.Status, Attempts: dl.Attempts, Topic: dl.Source.Topic,
			SourcePartition: dl.Source.Partition, SourceOffset: dl.Source.Offset, SourceTime: dl.Source.Time,
			Key: dl.Source.Key, Value: dl.Source.Value, ValueTruncated: dl.ValueTruncated, ValueDropped: dl.ValueDroppedMsg}
	}
	return out, err
}

// profiles adapts the predictor's task profiles to api.ProfileReader.
type profiles struct{ p *predict.Predictor }

var _ api.ProfileReader = profiles{}

func (pr profiles) Profiles(ctx context.Context, tenant string) ([]wire.TaskProfile, error) {
	if pr.p == nil {
		return []wire.TaskProfile{}, nil
	}
	ps, err := pr.p.Profiles(ctx, tenant)
	out := make([]wire.TaskProfile, len(ps))
	for i, p := range ps {
		out[i] = wire.TaskProfile{Tenant: p.Tenant, From: p.From, To: p.To, Qualifier: p.Qualifier,
			Runs: p.Runs, Follows: p.Follows, Probability: p.Probability(),
			DelayMs: float64(p.Delay) / float64(time.Millisecond), LoadMs: float64(p.Load) / float64(time.Millisecond),
			Predictions: p.Predictions, Hits: p.Hits}
	}
	return out, err
}
