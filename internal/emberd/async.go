package emberd

import (
	"context"
	"fmt"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/asyncinv"
	"github.com/ember-run/ember/engine/registry"
)

// asyncPartitions is the partition count of the queue topic: how many
// replicas (and batches per replica) can share the queue.
const asyncPartitions = 8

// newAsync builds the queue of asynchronous invocations and its own
// consumers (one consumer group shared by every replica).
func (d *Daemon) newAsync() error {
	d.async = asyncinv.New(d.rdb, d.topics, d.usage, d.registry, asyncinv.Config{
		Topic: d.cfg.AsyncTopic, RetryDelay: d.cfg.AsyncRetryDelay,
		Log: d.log.With().Str("component", "async").Logger(),
	})
	var err error
	d.asyncCons, err = consumers.New(d.brokers, d.async,
		consumers.WithLogger(d.cfg.Log), consumers.WithConn(d.cfg.Kafka), consumers.WithDrainTimeout(d.cfg.DrainTimeout),
		consumers.WithGroupTimings(d.cfg.SessionTimeout, d.cfg.SessionTimeout/10, d.cfg.RebalanceTimeout),
		consumers.WithCommitInterval(d.cfg.CommitInterval))
	if err != nil {
		return err
	}
	// Requests run one per batch, many at once in any order; a request
	// the queue cannot finish (Ember's failure) is retried without end.
	return d.asyncCons.Apply([]consumers.Binding{{
		ID: "ember/async", Tenant: registry.SystemOwner, Function: "async", Topic: d.cfg.AsyncTopic, GroupID: "ember.async",
		Settings: settings.Settings{StartingPosition: settings.TrimHorizon, BatchSize: 1, Ordering: settings.OrderNone,
			MaxConcurrency: 64, MaxRetryAttempts: 0},
	}})
}

// ensureAsyncTopic creates the queue topic.
func (d *Daemon) ensureAsyncTopic(ctx context.Context) error {
	if err := d.topics.CreateTopic(ctx, d.cfg.AsyncTopic, asyncPartitions); err != nil {
		return fmt.Errorf("create the async topic %s: %w", d.cfg.AsyncTopic, err)
	}
	_, err := d.registry.PutTopic(ctx, registry.Topic{Name: d.cfg.AsyncTopic, Owner: registry.SystemOwner})
	return err
}

// deferReserve is how many idle instances deferred executions leave to
// other work before they start ahead of their latest start.
const deferReserve = 1

// idleCapacity is asyncinv.Capacity: the warming pool's instances (idle
// and not assigned to any tenant, so any deferred execution may take one)
// beyond the reserve, fewer by the invocations waiting in this emberd for
// an instance.
func (d *Daemon) idleCapacity(ctx context.Context) (int, error) {
	occ, err := d.pool.Occupancy(ctx)
	if err != nil {
		return 0, err
	}
	warm := 0
	for _, o := range occ {
		warm += o.Warm
	}
	return warm - deferReserve - d.sched.Waiting(), nil
}
