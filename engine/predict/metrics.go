package predict

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	loads       *prometheus.CounterVec
	hits        prometheus.Counter
	flushErrors prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_predict_loads_total",
			Help: "Loads ahead that task profiles called for, by outcome (loaded, already_hot, no_instance, unresolved, failed, over_limit).",
		}, []string{"outcome"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ember_predict_hits_total",
			Help: "Invocations that were the first on a container a prediction loaded ahead (counted where they ran).",
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ember_predict_flush_errors_total",
			Help: "Batches of task profile updates Redis did not take (lost).",
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.loads, m.hits, m.flushErrors} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
