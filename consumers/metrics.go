package consumers

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Manager's Prometheus collectors, labelled by binding.
type metrics struct {
	records       *prometheus.CounterVec
	filtered      *prometheus.CounterVec
	expired       *prometheus.CounterVec
	invocations   *prometheus.CounterVec
	dlq           *prometheus.CounterVec
	batchSize     *prometheus.HistogramVec
	eventToFetch  *prometheus.HistogramVec
	fetchToInvoke *prometheus.HistogramVec
	eventToStart  *prometheus.HistogramVec
	eventToCommit *prometheus.HistogramVec
	doneToCommit  *prometheus.HistogramVec
}

// latencyBuckets span 1 ms to ~2 h: end-to-end latency includes lag.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 17)

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "records_total",
			Help: "Records fetched from Kafka, per binding.",
		}, []string{"binding"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "filtered_records_total",
			Help: "Records that matched none of the binding's filters: committed without an invocation.",
		}, []string{"binding"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "expired_records_total",
			Help: "Records removed by retention before the binding read them (lost to it).",
		}, []string{"binding"}),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "invocations_total",
			Help: "Invoke calls per binding and outcome (ok, function_error, timeout, crashed, platform_error).",
		}, []string{"binding", "status"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "dlq_records_total",
			Help: "Records written to the dead-letter topic, per binding.",
		}, []string{"binding"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "batch_records",
			Help:    "Records per invoked batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000},
		}, []string{"binding"}),
		eventToFetch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "event_to_fetch_seconds",
			Help:    "From each record's Kafka timestamp (millisecond precision) to its fetch by the consumer.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 14),
		}, []string{"binding"}),
		fetchToInvoke: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "fetch_to_invoke_seconds",
			Help:    "Time from fetching a batch's oldest record to each Invoke call.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 14), // 50us .. ~75s
		}, []string{"binding"}),
		eventToStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ember", Subsystem: "binding", Name: "event_to_start_seconds",
			Help:    "From the Kafka timestamp of a batch's oldest record to its handler start (end-to-end latency, lag included).",
			Buckets: latencyBuckets,
		}, []string{"binding"}),
		eventToCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ember", Subsystem: "binding", Name: "event_to_commit_seconds",
			Help:    "From each record's Kafka timestamp to the commit of its offset.",
			Buckets: latencyBuckets,
		}, []string{"binding"}),
		doneToCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ember", Subsystem: "consumer", Name: "done_to_commit_seconds",
			Help:    "From each record's end (invoked, dead-lettered or filtered) to the commit of its offset.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 14),
		}, []string{"binding"}),
	}
	for _, c := range []prometheus.Collector{m.records, m.filtered, m.expired, m.invocations, m.dlq, m.batchSize,
		m.eventToFetch, m.fetchToInvoke, m.eventToStart, m.eventToCommit, m.doneToCommit} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("consumers: register metrics: %w", err)
		}
	}
	return m, nil
}

// bindingMetrics are the children of one binding.
type bindingMetrics struct {
	id            string
	parent        *metrics
	records       prometheus.Counter
	filtered      prometheus.Counter
	expired       prometheus.Counter
	dlq           prometheus.Counter
	batchSize     prometheus.Observer
	eventToFetch  prometheus.Observer
	fetchToInvoke prometheus.Observer
	eventToStart  prometheus.Observer
	eventToCommit prometheus.Observer
	doneToCommit  prometheus.Observer
}

func (m *metrics) forBinding(id string) *bindingMetrics {
	return &bindingMetrics{
		id:            id,
		parent:        m,
		records:       m.records.WithLabelValues(id),
		filtered:      m.filtered.WithLabelValues(id),
		expired:       m.expired.WithLabelValues(id),
		dlq:           m.dlq.WithLabelValues(id),
		batchSize:     m.batchSize.WithLabelValues(id),
		eventToFetch:  m.eventToFetch.WithLabelValues(id),
		fetchToInvoke: m.fetchToInvoke.WithLabelValues(id),
		eventToStart:  m.eventToStart.WithLabelValues(id),
		eventToCommit: m.eventToCommit.WithLabelValues(id),
		doneToCommit:  m.doneToCommit.WithLabelValues(id),
	}
}

func (b *bindingMetrics) invocation(status string) {
	b.parent.invocations.WithLabelValues(b.id, status).Inc()
}
