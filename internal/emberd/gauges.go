package emberd

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lagEvery is how often consumer lag is sampled for /metrics.
const lagEvery = 5 * time.Second

// gauges samples what dashboards watch: consumer lag per binding and
// partition, and pool occupancy per class and state.
type gauges struct {
	lag       *prometheus.GaugeVec
	instances *prometheus.GaugeVec
}

func newGauges(reg prometheus.Registerer) (*gauges, error) {
	g := &gauges{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ember_consumer_lag_records",
			Help: "Records not yet committed by a binding's consumer group, per partition (end offset - committed offset).",
		}, []string{"binding", "topic", "partition"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ember_pool_instances",
			Help: "Instances on live agents per resource class and state (warm, active, busy).",
		}, []string{"class", "state"}),
	}
	for _, c := range []prometheus.Collector{g.lag, g.instances} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// run samples every lagEvery until ctx is done.
func (g *gauges) run(ctx context.Context, d *Daemon) error {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		g.sample(ctx, d)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (g *gauges) sample(ctx context.Context, d *Daemon) {
	ctx, cancel := context.WithTimeout(ctx, lagEvery)
	defer cancel()
	if occ, err := d.pool.Occupancy(ctx); err == nil {
		g.instances.Reset()
		for _, o := range occ {
			g.instances.WithLabelValues(o.Class, "warm").Set(float64(o.Warm))
			g.instances.WithLabelValues(o.Class, "active").Set(float64(o.Active))
			g.instances.WithLabelValues(o.Class, "busy").Set(float64(o.Busy))
		}
	}
	bs, err := d.registry.ListBindings(ctx, "")
	if err != nil {
		return
	}
	g.lag.Reset()
	for _, b := range bs {
		if !b.Enabled {
			continue
		}
		lags, err := d.cons.Lag(ctx, consumerBinding(b))
		if err != nil {
			continue
		}
		for _, l := range lags {
			g.lag.WithLabelValues(b.Key(), b.Topic, strconv.Itoa(l.Partition)).Set(float64(l.Lag))
		}
	}
}
