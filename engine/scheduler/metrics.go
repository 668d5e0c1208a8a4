package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ember-run/ember/engine/invoke"
)

type metrics struct {
	invocations    *prometheus.CounterVec
	platformErrors prometheus.Counter
	claimWait      *prometheus.HistogramVec
	dispatch       prometheus.Histogram
	waiting        *prometheus.GaugeVec
	waited         *prometheus.HistogramVec
	preloads       *prometheus.CounterVec
	stages         *prometheus.HistogramVec
	holds          *prometheus.CounterVec
	// heldTaken and heldReleased are holds' two outcomes, resolved once
	// (an invocation takes a hold on its hot path).
	heldTaken, heldReleased prometheus.Counter
	// stageObs are stages' observers by start kind (invoke.StartKind's
	// values) and stage (stageNames).
	stageObs [invoke.StartCold + 1][len(stageNames)]prometheus.Observer
}

var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics() *metrics {
	m := &metrics{
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
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ember_scheduler_stage_seconds",
			Help:    "Where invocations' time went, by stage (claim, dispatch, agent, to_handler, handler, from_handler, release) and start kind; see the per-stage budget in docs/architecture.md.",
			Buckets: stageBuckets,
		}, []string{"stage", "start"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_scheduler_held_claims_total",
			Help: "Claims kept between invocations of one key (a partition's worker), by what became of them: taken (an invocation took it instead of claiming in Redis) or released.",
		}, []string{"outcome"}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ember_scheduler_dispatch_seconds",
			Help:    "Dispatch round trip to the agent, function run time included.",
			Buckets: latencyBuckets,
		}),
	}
	m.heldTaken, m.heldReleased = m.holds.WithLabelValues("taken"), m.holds.WithLabelValues("released")
	for k := invoke.StartHot; k <= invoke.StartCold; k++ {
		for i, name := range stageNames {
			m.stageObs[k][i] = m.stages.WithLabelValues(name, invoke.StartKind(k).String())
		}
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.invocations, m.platformErrors, m.claimWait, m.dispatch, m.waiting, m.waited, m.preloads, m.stages, m.holds} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// stageBuckets resolve the warm path's stages: 10 µs to ~5 s.
var stageBuckets = prometheus.ExponentialBuckets(0.00001, 2, 20)

// stageNames are the scheduler's stages, in the order of an invocation.
var stageNames = [...]string{"claim", "dispatch", "agent", "to_handler", "handler", "from_handler", "release"}

// observeStages records a finished invocation's measured stages: of those
// the function answered (a timeout's or a crash's stages hold the kill).
func (m *metrics) observeStages(res invoke.Result) {
	if res.Start < invoke.StartHot || res.Start > invoke.StartCold ||
		(res.Status != invoke.StatusOK && res.Status != invoke.StatusFunctionError) {
		return
	}
	t := res.Timing
	d := [len(stageNames)]time.Duration{t.Claim, t.Dispatch, t.Agent, t.ToHandler, res.Duration, t.FromHandler, t.Release}
	obs := &m.stageObs[res.Start]
	for i, v := range d {
		if v > 0 { // zero: not measured (an agent that sent no timing)
			obs[i].Observe(v.Seconds())
		}
	}
}
