package emberd

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// occupancyEvery is how often pool occupancy is sampled for /metrics.
const occupancyEvery = 5 * time.Second

// gauges samples pool occupancy per class and state for dashboards (the
// lag monitor exports consumer lag).
type gauges struct {
	instances *prometheus.GaugeVec
}

func newGauges(reg prometheus.Registerer) (*gauges, error) {
	g := &gauges{
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ember_pool_instances",
			Help: "Instances on live agents per resource class and state (warm, active, busy).",
		}, []string{"class", "state"}),
	}
	for _, c := range []prometheus.Collector{g.instances} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// run samples every occupancyEvery until ctx is done.
func (g *gauges) run(ctx context.Context, d *Daemon) error {
	t := time.NewTicker(occupancyEvery)
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
	ctx, cancel := context.WithTimeout(ctx, occupancyEvery)
	defer cancel()
	if occ, err := d.pool.Occupancy(ctx); err == nil {
		g.instances.Reset()
		for _, o := range occ {
			g.instances.WithLabelValues(o.Class, "warm").Set(float64(o.Warm))
			g.instances.WithLabelValues(o.Class, "active").Set(float64(o.Active))
			g.instances.WithLabelValues(o.Class, "busy").Set(float64(o.Busy))
		}
	}
}
