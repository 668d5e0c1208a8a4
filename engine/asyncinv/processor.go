package asyncinv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
)

// DefaultTopic is the queue of asynchronous invocations.
const DefaultTopic = "ember.async"

// Invoker runs one invocation on the warm path (the scheduler).
type Invoker interface {
	Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error)
}

// Producer writes records and returns once they are acknowledged
// (consumers.Topics).
type Producer interface {
	Produce(ctx context.Context, msgs ...kafka.Message) error
}

// Configs reads functions' asynchronous invocation configuration
// (registry.Registry).
type Configs interface {
	AsyncConfigOf(ctx context.Context, tenant, name string) (registry.AsyncConfig, error)
	// ResolveTopic checks at delivery time that the tenant may still
	// produce to a destination topic (a grant can be withdrawn).
	ResolveTopic(ctx context.Context, tenant, name string, need registry.Access) (string, error)
}

// Config configures a Queue.
type Config struct {
	// Topic is the queue topic. Default: DefaultTopic.
	Topic string
	// RetryDelay is the wait before the first retry of a function error;
	// it doubles for the next. Default: 1s.
	RetryDelay time.Duration
	Log        zerolog.Logger
}

// Queue accepts asynchronous invocations and runs them: its Invoke is the
// Invoker of the consumers of the queue topic.
type Queue struct {
	st      store
	out     Producer
	inv     Invoker
	configs Configs
	cfg     Config
}

// New returns a Queue keeping invocation records in rdb.
func New(rdb redis.UniversalClient, out Producer, inv Invoker, configs Configs, cfg Config) *Queue {
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	return &Queue{st: store{rdb: rdb, prefix: "{ember}:async:"}, out: out, inv: inv, configs: configs, cfg: cfg}
}

// Topic is the queue topic.
func (q *Queue) Topic() string { return q.cfg.Topic }

// Enqueue records r and queues it durably; it returns once the broker
// acknowledged it.
func (q *Queue) Enqueue(ctx context.Context, r Request) error {
	if r.Enqueued.IsZero() {
		r.Enqueued = time.Now()
	}
	if err := q.st.accept(ctx, r); err != nil {
		return fmt.Errorf("async %s: record: %w: %w", r.ID, registry.ErrUnavailable, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := q.out.Produce(ctx, kafka.Message{Topic: q.cfg.Topic, Key: []byte(r.Tenant + "/" + r.Function), Value: b}); err != nil {
		// Not queued: no record either (a retried delivery looks for it).
		_ = q.st.rdb.Del(context.WithoutCancel(ctx), q.st.key(r.ID)).Err()
		return fmt.Errorf("async %s: queue: %w: %w", r.ID, registry.ErrUnavailable, err)
	}
	return nil
}

// Get returns tenant's invocation id.
func (q *Queue) Get(ctx context.Context, tenant, id string) (Invocation, error) {
	inv, err := q.st.get(ctx, id)
	if err != nil {
		return Invocation{}, err
	}
	if inv.Tenant != tenant {
		return Invocation{}, fmt.Errorf("invocation %s: %w", id, registry.ErrNotFound)
	}
	return inv, nil
}

// Invoke implements the consumers' Invoker for the queue topic: payload is
// a Kafka event of queued requests, each run to its end (retries and
// delivery included). An error is Ember's own failure: the consumers retry
// the batch, and requests already finished are not run again.
func (q *Queue) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	var ev events.KafkaEvent
	if err := json.Unmarshal(inv.Payload, &ev); err != nil {
		return invoke.Result{}, fmt.Errorf("async: queue batch: %w", err)
	}
	for _, recs := range ev.Records {
		for _, rec := range recs {
			b, err := base64.StdEncoding.DecodeString(rec.Value)
			var r Request
			if err == nil {
				err = json.Unmarshal(b, &r)
			}
			if err != nil || r.ID == "" {
				q.cfg.Log.Error().Err(err).Int64("offset", rec.Offset).Msg("async: a queued record is not a request: skipped")
				continue
			}
			if err := q.run(ctx, r); err != nil {
				return invoke.Result{}, err
			}
		}
	}
	return invoke.Result{InvocationID: inv.ID, Status: invoke.StatusOK, Payload: []byte("null")}, nil
}

// run runs r to its end: skipped if it ended before (a redelivery),
// retried after function errors, dropped past its maximum age, and its
// outcome delivered.
func (q *Queue) run(ctx context.Context, r Request) error {
	log := q.cfg.Log.With().Str("invocation", r.ID).Str("tenant", r.Tenant).Str("function", r.Function).Logger()
	prev, err := q.st.get(ctx, r.ID)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return err
	}
	cfg, err := q.configs.AsyncConfigOf(ctx, r.Tenant, r.Function)
	if err != nil {
		return err
	}
	if prev.State == StateSucceeded || prev.State == StateFailed {
		if prev.Delivered == "" && destination(cfg, prev.State) != nil {
			rec := q.record(r, prev.Condition, prev.Attempts, invoke.Result{Status: statusOf(prev.Status), Version: prev.Version, Payload: prev.Result})
			return q.deliver(ctx, r, destination(cfg, prev.State), rec)
		}
		return nil // ran and delivered before a crash: not again
	}
	var res invoke.Result
	ranTrace := r.TraceID
	// A run interrupted by a crash keeps the attempts that finished; the
	// interrupted one runs again.
	attempts, condition := max(prev.Attempts-1, 0), CondRetriesExhausted
	for {
		// A deferred execution's age counts from its latest start.
		if age := time.Since(later(r.Enqueued, r.LatestStart)); age > cfg.MaxEventAge {
			condition = CondEventAgeExceeded
			log.Warn().Dur("age", age).Msg("async: dropped past its maximum event age")
			break
		}
		attempts++
		if err := q.st.running(ctx, r.ID, attempts); err != nil {
			return fmt.Errorf("async %s: %w: %w", r.ID, registry.ErrUnavailable, err)
		}
		inv := &invoke.Invocation{ID: r.ID, Tenant: r.Tenant, Function: r.Function, Qualifier: r.Qualifier,
			Payload: r.Payload, Source: "async", TraceID: r.TraceID, Retry: attempts > 1}
		res, err = q.inv.Invoke(ctx, inv)
		// The trace id as the function saw it (the invoker may name the
		// function in it): a destination function is invoked with it.
		ranTrace = inv.TraceID
		if errors.Is(err, registry.ErrNotFound) { // the function is gone: nothing will ever run it
			res, err = invoke.Result{Status: invoke.StatusFunctionError, ErrorType: "FunctionNotFound", Payload: []byte(`{"errorMessage":"function not found"}`)}, nil
			attempts = cfg.MaxRetryAttempts + 1
		}
		if err != nil {
			return err // Ember's failure: the consumers retry; attempts restart
		}
		if res.OK() {
			condition = CondSuccess
			break
		}
		if attempts > cfg.MaxRetryAttempts {
			break
		}
		delay := q.cfg.RetryDelay << (attempts - 1)
		log.Info().Str("status", res.Status.String()).Dur("retry_in", delay).Msg("async: function failed, retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	state := StateFailed
	if condition == CondSuccess {
		state = StateSucceeded
	}
	if err := q.st.finish(ctx, r.ID, state, res.Status.String(), condition, res.Version, res.Payload); err != nil {
		return fmt.Errorf("async %s: %w: %w", r.ID, registry.ErrUnavailable, err)
	}
	if d := destination(cfg, state); d != nil {
		rec := q.record(r, condition, attempts, res)
		r.TraceID = ranTrace
		return q.deliver(ctx, r, d, rec)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func destination(c registry.AsyncConfig, state string) *registry.Destination {
	if state == StateSucceeded {
		return c.OnSuccess
	}
	return c.OnFailure
}

func statusOf(s string) invoke.Status {
	for _, st := range []invoke.Status{invoke.StatusOK, invoke.StatusFunctionError, invoke.StatusTimeout, invoke.StatusCrashed} {
		if st.String() == s {
			return st
		}
	}
	return invoke.StatusFunctionError
}

// record builds the destination record of r's outcome.
func (q *Queue) record(r Request, condition string, attempts int, res invoke.Result) Record {
	arn := r.Tenant + "/" + r.Function
	if r.Qualifier != "" {
		arn += ":" + r.Qualifier
	}
	rec := Record{Version: "1.0", Timestamp: time.Now().UTC(),
		RequestContext: RecordRequest{RequestID: r.ID, FunctionArn: arn, Condition: condition, ApproximateInvokeCount: attempts},
		RequestPayload: asJSON(r.Payload), ResponseContext: RecordResponse{StatusCode: 200, ExecutedVersion: res.Version}}
	if len(res.Payload) > 0 {
		rec.ResponsePayload = asJSON(res.Payload)
	}
	if condition != CondSuccess && res.Status != invoke.StatusOK && res.Status != 0 {
		rec.ResponseContext.FunctionError = "Unhandled"
	}
	return rec
}

// maxRecordPayload bounds each payload in a destination record (Lambda
// truncates large ones too); the invocation's record keeps the result.
const maxRecordPayload = 256 << 10

// deliver sends rec to d, then notes it was delivered. A destination that
// can never take it (the tenant lost the topic, the record is too large
// for it) is logged and noted as dropped: it must not hold the queue.
func (q *Queue) deliver(ctx context.Context, r Request, d *registry.Destination, rec Record) error {
	for _, p := range []*json.RawMessage{&rec.RequestPayload, &rec.ResponsePayload} {
		if len(*p) > maxRecordPayload {
			*p, _ = json.Marshal(fmt.Sprintf("(%d bytes, over the destination record's limit of %d: see ember invocation get %s)", len(*p), maxRecordPayload, r.ID))
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	log := q.cfg.Log.With().Str("invocation", r.ID).Str("tenant", r.Tenant).Str("destination", d.String()).Logger()
	note := d.String()
	if d.Function != "" {
		// One id per delivery: a redelivery finds it queued already.
		next := Request{ID: r.ID + "-dest", Tenant: r.Tenant, Function: d.Function, Payload: b, TraceID: r.TraceID}
		if _, err := q.st.get(ctx, next.ID); errors.Is(err, registry.ErrNotFound) {
			if err := q.Enqueue(ctx, next); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	} else {
		_, err := q.configs.ResolveTopic(ctx, r.Tenant, d.Topic, registry.AccessProduce)
		if err == nil {
			err = q.out.Produce(ctx, kafka.Message{Topic: d.Topic, Key: []byte(r.ID), Value: b})
		}
		switch {
		case errors.Is(err, registry.ErrNotFound), errors.Is(err, kafka.UnknownTopicOrPartition), errors.Is(err, kafka.MessageSizeTooLarge):
			log.Error().Err(err).Msg("async: the destination cannot take the outcome: dropped")
			note = "dropped: " + err.Error()
		case err != nil:
			return fmt.Errorf("async %s: destination %s: %w: %w", r.ID, d, registry.ErrUnavailable, err)
		}
	}
	if err := q.st.delivered(ctx, r.ID, note); err != nil {
		return fmt.Errorf("async %s: %w: %w", r.ID, registry.ErrUnavailable, err)
	}
	return nil
}
