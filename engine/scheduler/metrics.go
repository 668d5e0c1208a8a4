package scheduler

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	invocations    *prometheus.CounterVec
	platformErrors prometheus.Counter
	claimWait      *prometheus.HistogramVec
	dispatch       prometheus.Histogram
	waiting        *prometheus.GaugeVec
	waited         *prometheus.HistogramVec
	preloads       *prometheus.CounterVec
}

var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics() *metrics {
	return &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_scheduler_invocations_total",
			Help: "Invocations dispatched, by function status and start kind (hot, pool_hit, cold).",
		}, []string{"status", "start"}),
		platformErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ember_scheduler_platform_errors_total",
			Help: "Invocations that failed inside Ember (no instance, agent lost), not in the function.",
		}),
		claimWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_scheduler_claim_seconds",
			Help:    "Time to claim an instance, waiting included, by the pool it came from (hot, active, warm).",
			Buckets: latencyBuckets,
		}, []string{"pool"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ember_scheduler_waiting",
			Help: "Invocations waiting for an instance, by class (fixed classes mN, sub-pools sp-NAME).",
		}, []string{"class"}),
		waited: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_scheduler_wait_seconds",
			Help:    "Time invocations that had to wait spent waiting for an instance, by class.",
			Buckets: latencyBuckets,
		}, []string{"class"}),
		preloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_scheduler_preloads_total",
			Help: "Versions pre-loaded on instances that held the version they replace, by result (loaded, failed).",
		}, []string{"result"}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ember_scheduler_dispatch_seconds",
			Help:    "Dispatch round trip to the agent, function run time included.",
			Buckets: latencyBuckets,
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.invocations, m.platformErrors, m.claimWait, m.dispatch, m.waiting, m.waited, m.preloads} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
