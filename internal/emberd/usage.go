package emberd

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/invoke"
)

// DefaultUsageTopic is where usage records go unless Config.UsageTopic says otherwise.
const DefaultUsageTopic = "ember.usage"

// usageQueue bounds the records waiting to be produced; beyond it records
// are dropped (and counted) rather than delay an invocation.
const usageQueue = 4096

// UsageRecord is one invocation's usage, produced as JSON to the usage
// topic, keyed by tenant/function.
type UsageRecord struct {
	Tenant       string    `json:"tenant"`
	Function     string    `json:"function"`
	Version      string    `json:"version"`
	InvocationID string    `json:"invocation_id"`
	Source       string    `json:"source,omitempty"` // binding id or "api"
	Status       string    `json:"status"`
	Start        time.Time `json:"start"`
	// StartKind is "hot" (the version's container was running), "pool_hit"
	// (an instance of the pool started it) or "cold" (no instance was free).
	StartKind  string  `json:"start_kind"`
	DurationMs float64 `json:"duration_ms"`
	// BilledMs is the duration rounded up to 1 ms (at least 1).
	BilledMs int64 `json:"billed_ms"`
	// MemoryMB is the configured memory; MaxMemoryUsedMB the peak.
	MemoryMB        int64 `json:"memory_mb"`
	MaxMemoryUsedMB int64 `json:"max_memory_used_mb"`
	CPUNs           int64 `json:"cpu_ns"`
	RxBytes         int64 `json:"rx_bytes"`
	TxBytes         int64 `json:"tx_bytes"`
	RxPackets       int64 `json:"rx_packets"`
	TxPackets       int64 `json:"tx_packets"`
	NetworkMeasured bool  `json:"network_measured"`
	// GBSeconds is MemoryMB/1024 * BilledMs/1000.
	GBSeconds float64 `json:"gb_seconds"`
	// Accounting is how the agent measured: "ebpf", "cgroup", or "" (not measured).
	Accounting string `json:"accounting,omitempty"`
	Agent      string `json:"agent,omitempty"`
	Instance   string `json:"instance,omitempty"`
}

// usageRecord builds the record of a finished invocation.
func usageRecord(inv *invoke.Invocation, res invoke.Result, now time.Time) UsageRecord {
	billed := max(int64(math.Ceil(float64(res.Duration)/float64(time.Millisecond))), 1)
	start := res.HandlerStart
	if start.IsZero() {
		start = now.Add(-res.Duration)
	}
	r := UsageRecord{
		Tenant: inv.Tenant, Function: inv.Function, Version: res.Version, InvocationID: inv.ID,
		Source: inv.Source, Status: res.Status.String(), Start: start.UTC(), StartKind: res.Start.String(),
		DurationMs: float64(res.Duration) / float64(time.Millisecond), BilledMs: billed,
		Agent: res.Agent, Instance: res.Instance,
	}
	if u := res.Usage; u != nil {
		r.MemoryMB, r.MaxMemoryUsedMB = u.MemorySizeMB, (u.MemoryPeakBytes+(1<<20)-1)>>20
		r.CPUNs = u.CPU.Nanoseconds()
		r.RxBytes, r.TxBytes, r.RxPackets, r.TxPackets = u.RxBytes, u.TxBytes, u.RxPackets, u.TxPackets
		r.NetworkMeasured, r.Accounting = u.NetworkMeasured, u.Source
		r.GBSeconds = float64(r.MemoryMB) / 1024 * float64(billed) / 1000
	}
	return r
}

// invoker is what usageInvoker wraps (the scheduler).
type invoker interface {
	Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error)
}

// usageInvoker is an Invoker that, after each invocation the engine ran
// (nil error), queues a usage record for the usage topic. It never fails
// nor delays an invocation: a full queue drops the record (counted).
type usageInvoker struct {
	next    invoker
	w       *kafka.Writer
	log     zerolog.Logger
	queue   chan UsageRecord // encoded off the invocation's path
	full    chan struct{}    // the queue holds a batch: write stops lingering
	linger  time.Duration    // usageLinger
	mu      sync.Mutex
	sums    map[string]*wire.FunctionUsage // tenant/function -> since start
	dropped prometheus.Counter
	failed  prometheus.Counter
}

func newUsageInvoker(next invoker, brokers []string, tr *kafka.Transport, topic string, reg prometheus.Registerer, log zerolog.Logger) (*usageInvoker, error) {
	u := &usageInvoker{
		next: next,
		w: &kafka.Writer{
			Addr:      kafka.TCP(brokers...),
			Transport: tr,
			Topic:     topic,
			Balancer:  &kafka.Hash{},
			// write gathers the batch (usageLinger); kafka-go's 1 s default
			// would hold it back. BatchSize stays 100: kafka-go allocates
			// room for that many messages per batch.
			BatchTimeout: time.Millisecond,
			RequiredAcks: kafka.RequireAll,
		},
		log:    log.With().Str("component", "usage").Str("topic", topic).Logger(),
		queue:  make(chan UsageRecord, usageQueue),
		full:   make(chan struct{}, 1),
		linger: usageLinger,
		sums:   map[string]*wire.FunctionUsage{},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ember_usage_records_dropped_total", Help: "Usage records dropped because the queue to the usage topic was full.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ember_usage_records_failed_total", Help: "Usage records the broker did not accept.",
		}),
	}
	for _, c := range []prometheus.Collector{u.dropped, u.failed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// Invoke implements the consumers' and the API's Invoker.
func (u *usageInvoker) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	res, err := u.next.Invoke(ctx, inv)
	if err != nil {
		return res, err
	}
	select {
	case u.queue <- usageRecord(inv, res, time.Now()):
		if len(u.queue) >= usageBatch {
			select {
			case u.full <- struct{}{}:
			default:
			}
		}
	default:
		u.dropped.Inc()
	}
	return res, nil
}

// Usage implements api.UsageReader: the sums of tenant's functions (every
// tenant's for ""), by tenant and function.
func (u *usageInvoker) Usage(tenant string) []wire.FunctionUsage {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := []wire.FunctionUsage{}
	for _, fu := range u.sums {
		if tenant == "" || fu.Tenant == tenant {
			out = append(out, *fu)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Function < out[j].Function
	})
	return out
}

// add sums rec into its function's usage.
func (u *usageInvoker) add(rec *UsageRecord) {
	u.mu.Lock()
	defer u.mu.Unlock()
	key := rec.Tenant + "/" + rec.Function
	fu := u.sums[key]
	if fu == nil {
		fu = &wire.FunctionUsage{Tenant: rec.Tenant, Function: rec.Function}
		u.sums[key] = fu
	}
	fu.Invocations++
	if rec.Status != invoke.StatusOK.String() {
		fu.Errors++
	}
	fu.DurationMs += rec.DurationMs
	fu.CPUMs += float64(rec.CPUNs) / 1e6
	fu.MaxMemoryUsedMB = max(fu.MaxMemoryUsedMB, rec.MaxMemoryUsedMB)
	fu.GBSeconds += rec.GBSeconds
}

// message sums rec and encodes it for the usage topic.
func (u *usageInvoker) message(rec UsageRecord) (kafka.Message, bool) {
	u.add(&rec)
	b, ok := rec.appendJSON(make([]byte, 0, 512))
	if !ok {
		var err error
		if b, err = json.Marshal(rec); err != nil { // NaN, infinity, a year outside 0-9999
			u.log.Error().Err(err).Msg("encode usage record")
			return kafka.Message{}, false
		}
	}
	return kafka.Message{Key: []byte(rec.Tenant + "/" + rec.Function), Value: b}, true
}

// usageLinger is how long a batch of usage records waits for more before
// it is produced: at a few hundred invocations a second one produce request
// then carries tens of records instead of one or two.
const usageLinger = 50 * time.Millisecond

// usageBatch is the most records one produce request carries.
const usageBatch = 1000

// run produces queued records until ctx is done, then flushes what is
// queued and closes the writer. Produce requests may take 5 s more than
// ctx: a batch being written or gathered when ctx ends still goes.
func (u *usageInvoker) run(ctx context.Context) error {
	defer func() {
		if err := u.w.Close(); err != nil {
			u.log.Warn().Err(err).Msg("close usage writer")
		}
	}()
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	grace := time.AfterFunc(time.Hour, cancel) // armed when ctx ends
	grace.Stop()
	defer grace.Stop()
	defer context.AfterFunc(ctx, func() { grace.Reset(5 * time.Second) })()
	for {
		select {
		case r := <-u.queue:
			u.write(ctx, wctx, r)
		case <-ctx.Done():
			for {
				select {
				case r := <-u.queue:
					u.write(ctx, wctx, r)
				default:
					return nil
				}
			}
		}
	}
}

// write produces first and what else is queued within usageLinger (at
// most usageBatch records; lingering ends with ctx, so a stopping run's
// flush takes what is queued at once, and once the queue holds a batch),
// in one batch, under wctx. It sleeps through the linger and takes the
// queue afterwards rather than waking for every record that arrives in
// between.
func (u *usageInvoker) write(ctx, wctx context.Context, first UsageRecord) {
	batch := make([]kafka.Message, 0, 16)
	add := func(r UsageRecord) {
		if m, ok := u.message(r); ok {
			batch = append(batch, m)
		}
	}
	add(first)
	if len(u.queue) < usageBatch-1 {
		linger := time.NewTimer(u.linger)
		select {
		case <-linger.C:
		case <-u.full:
		case <-ctx.Done():
		}
		linger.Stop()
	}
gather:
	for n := 1; n < usageBatch; n++ {
		select {
		case r := <-u.queue:
			add(r)
		default:
			break gather
		}
	}
	if len(batch) == 0 {
		return
	}
	if err := u.w.WriteMessages(wctx, batch...); err != nil {
		u.failed.Add(float64(len(batch)))
		if !errors.Is(err, context.Canceled) {
			u.log.Warn().Err(err).Int("records", len(batch)).Msg("produce usage records")
		}
	}
}
