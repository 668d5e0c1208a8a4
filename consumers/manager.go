package consumers

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ember-run/ember/engine/invoke"
)

// Invoker runs one invocation to completion.
type Invoker interface {
	// Invoke runs inv and returns how the function finished. A function
	// failure (handler error, timeout, crash) is a Result whose Status is not
	// StatusOK, with a nil error. A non-nil error means Ember itself failed
	// (no capacity, agent unreachable...): the records are retried and never
	// dead-lettered. Invoke MUST return when ctx is done. It is called
	// concurrently (per partition, one call in partition ordering and up to
	// MaxConcurrency in the others) and must not retain or modify
	// inv.Payload after it returns.
	Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error)
}

// Observer is told about every invocation a binding makes.
type Observer interface {
	// InvocationDone is called after each Invoke call returns, retries
	// included, from the partition's goroutine: it must be quick and must
	// not block.
	InvocationDone(r InvocationReport)
}

// InvocationReport describes one Invoke call of a batch.
type InvocationReport struct {
	Binding   string
	Topic     string
	Partition int
	Records   int
	// Attempt counts function-failure attempts from 1; platform retries of
	// the same attempt repeat its number.
	Attempt int
	Result  invoke.Result
	// Err is the Invoker's error (a platform failure); Result is then empty.
	Err error
	// FirstEventTime is the Kafka timestamp of the batch's oldest record
	// (millisecond precision; the producer's clock for CreateTime topics).
	FirstEventTime time.Time
	// FirstFetched is when the batch's oldest record was fetched;
	// InvokeStart and Done bracket the Invoke call.
	FirstFetched time.Time
	InvokeStart  time.Time
	Done         time.Time
}

// config holds the Manager's options.
type config struct {
	log               zerolog.Logger
	registry          *prometheus.Registry
	observer          Observer
	sessionTimeout    time.Duration
	heartbeatInterval time.Duration
	rebalanceTimeout  time.Duration
	commitInterval    time.Duration
	drainTimeout      time.Duration
	maxWait           time.Duration
	conn              Conn
	retryMin          time.Duration
	retryMax          time.Duration
}

// revokeTimeout bounds the drain of revoked partitions: within the
// rebalance timeout, so that the coordinator never hands a partition to
// another member while invocations for it still run here.
func (c config) revokeTimeout() time.Duration {
	return min(c.drainTimeout, c.rebalanceTimeout*3/4)
}

// Option configures a Manager.
type Option func(*config) error

// WithLogger sets the logger; the Manager adds component=consumers.
func WithLogger(l zerolog.Logger) Option {
	return func(c *config) error { c.log = l; return nil }
}

// WithRegistry registers the Manager's Prometheus metrics on r.
func WithRegistry(r *prometheus.Registry) Option {
	return func(c *config) error {
		if r == nil {
			return errors.New("consumers: nil prometheus registry")
		}
		c.registry = r
		return nil
	}
}

// WithObserver reports every invocation to o.
func WithObserver(o Observer) Option {
	return func(c *config) error { c.observer = o; return nil }
}

// WithGroupTimings sets the consumer-group session timeout (default 10s; the
// broker's minimum applies, 6s on Kafka and kfake unless lowered), heartbeat
// interval (default 1s) and rebalance timeout (default 60s). Revoked
// partitions drain for at most three quarters of the rebalance timeout.
func WithGroupTimings(session, heartbeat, rebalance time.Duration) Option {
	return func(c *config) error {
		if session <= 0 || heartbeat <= 0 || rebalance <= 0 {
			return errors.New("consumers: group timings must be positive")
		}
		if heartbeat >= session {
			return fmt.Errorf("consumers: heartbeat interval %s must be below session timeout %s", heartbeat, session)
		}
		c.sessionTimeout, c.heartbeatInterval, c.rebalanceTimeout = session, heartbeat, rebalance
		return nil
	}
}

// WithCommitInterval sets how often finished offsets are committed (default
// 1s). Offsets are also committed when a binding stops.
func WithCommitInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("consumers: commit interval must be positive")
		}
		c.commitInterval = d
		return nil
	}
}

// WithDrainTimeout bounds how long a stopping binding waits for in-flight
// invocations before cancelling them (default 30s).
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("consumers: drain timeout must be positive")
		}
		c.drainTimeout = d
		return nil
	}
}

// WithRetryBackoff sets how retries are paced: from min, doubling up to
// max (default 100ms to 10s). It applies to function failures, platform
// failures and failed writes to dead-letter and result topics.
func WithRetryBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max < min {
			return fmt.Errorf("consumers: retry backoff %v..%v: want 0 < min <= max", min, max)
		}
		c.retryMin, c.retryMax = min, max
		return nil
	}
}

// WithConn sets how the Manager connects to the brokers (TLS, SASL).
func WithConn(conn Conn) Option {
	return func(c *config) error { c.conn = conn; return nil }
}

// WithFetchMaxWait sets the longest a fetch waits at the broker for new data
// (default 250ms). Records are returned as soon as there are some; this only
// paces idle polling.
func WithFetchMaxWait(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("consumers: fetch max wait must be positive")
		}
		c.maxWait = d
		return nil
	}
}

// Manager runs the consumers of a set of bindings.
type Manager struct {
	brokers []string
	invoker Invoker
	cfg     config
	metrics *metrics
	log     zerolog.Logger
	conn    Conn

	applyMu sync.Mutex // serialises Apply and shutdown

	mu      sync.Mutex
	desired map[string]Binding
	running map[string]*consumer
	runCtx  context.Context // set while Run runs
	closed  bool
}

// New returns a Manager that reads from brokers and invokes through invoker.
func New(brokers []string, invoker Invoker, opts ...Option) (*Manager, error) {
	if len(brokers) == 0 {
		return nil, errors.New("consumers: no brokers")
	}
	for _, b := range brokers {
		if strings.TrimSpace(b) == "" {
			return nil, errors.New("consumers: empty broker address")
		}
	}
	if invoker == nil {
		return nil, errors.New("consumers: nil invoker")
	}
	cfg := config{
		log:               zerolog.Nop(),
		sessionTimeout:    10 * time.Second,
		heartbeatInterval: time.Second,
		rebalanceTimeout:  60 * time.Second,
		commitInterval:    time.Second,
		drainTimeout:      30 * time.Second,
		maxWait:           250 * time.Millisecond,
		retryMin:          100 * time.Millisecond,
		retryMax:          10 * time.Second,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	m := &Manager{
		brokers: append([]string(nil), brokers...),
		invoker: invoker,
		cfg:     cfg,
		log:     cfg.log.With().Str("component", "consumers").Logger(),
		conn:    cfg.conn,
		desired: make(map[string]Binding),
		running: make(map[string]*consumer),
	}
	if cfg.registry != nil {
		mt, err := newMetrics(cfg.registry)
		if err != nil {
			return nil, err
		}
		m.metrics = mt
	}
	return m, nil
}

// Run runs the desired bindings until ctx is done, then stops them all:
// in-flight invocations finish (up to the drain timeout) and finished offsets
// are committed. Run returns nil after a clean stop. Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	m.applyMu.Lock()
	m.mu.Lock()
	if m.runCtx != nil || m.closed {
		m.mu.Unlock()
		m.applyMu.Unlock()
		return errors.New("consumers: Run called twice")
	}
	m.runCtx = ctx
	m.mu.Unlock()
	m.reconcile()
	m.applyMu.Unlock()

	<-ctx.Done()

	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	m.closed = true
	running := m.running
	m.running = make(map[string]*consumer)
	m.mu.Unlock()
	m.stopAll(running)
	return nil
}

// Apply makes bindings the set that runs: new ones start, removed ones stop,
// and changed ones restart. Stopping a binding drains its in-flight
// invocations and commits, and Apply returns after that. Before Run, Apply
// only records the set. An invalid binding or a duplicate id rejects the whole
// set and changes nothing.
func (m *Manager) Apply(bindings []Binding) error {
	desired := make(map[string]Binding, len(bindings))
	for _, b := range bindings {
		if err := b.Validate(); err != nil {
			return err
		}
		if _, dup := desired[b.ID]; dup {
			return fmt.Errorf("binding %q appears twice: %w", b.ID, ErrInvalidBinding)
		}
		desired[b.ID] = b.withDefaults()
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("consumers: manager stopped")
	}
	m.desired = desired
	m.mu.Unlock()
	m.reconcile()
	return nil
}

// reconcile starts and stops runners to match desired. applyMu is held.
func (m *Manager) reconcile() {
	m.mu.Lock()
	if m.runCtx == nil || m.closed {
		m.mu.Unlock()
		return
	}
	stop := make(map[string]*consumer)
	for id, r := range m.running {
		if b, ok := m.desired[id]; !ok || !reflect.DeepEqual(b, r.b) {
			stop[id] = r
			delete(m.running, id)
		}
	}
	m.mu.Unlock()
	m.stopAll(stop)

	m.mu.Lock()
	defer m.mu.Unlock()
	for id, b := range m.desired {
		if _, ok := m.running[id]; ok {
			continue
		}
		m.running[id] = startConsumer(m, b)
		m.log.Info().Str("binding", id).Str("topic", b.Topic).Str("group", b.GroupID).Msg("binding started")
	}
}

func (m *Manager) stopAll(rs map[string]*consumer) {
	var g errgroup.Group
	for id, r := range rs {
		g.Go(func() error {
			r.stop(m.cfg.drainTimeout)
			m.log.Info().Str("binding", id).Msg("binding stopped")
			return nil
		})
	}
	_ = g.Wait()
}

// RecordTime returns the timestamp of the record at offset of a partition
// this process consumes for binding id, when it still holds the record
// (fetched and not yet committed): the lag monitor's time lag without a
// read from the broker.
func (m *Manager) RecordTime(id string, partition int, offset int64) (time.Time, bool) {
	m.mu.Lock()
	r := m.running[id]
	m.mu.Unlock()
	if r == nil {
		return time.Time{}, false
	}
	trackers := r.trackers.Load()
	if trackers == nil || (*trackers)[partition] == nil {
		return time.Time{}, false
	}
	return (*trackers)[partition].timeAt(offset)
}

// Stats returns a snapshot per running binding id.
func (m *Manager) Stats() map[string]BindingStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]BindingStats, len(m.running))
	for id, r := range m.running {
		out[id] = r.stats.snapshot()
	}
	return out
}
