package emberd

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/lagmon"
	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

// newLagMonitor watches every binding of the registry (disabled ones too:
// their lag is STOP) through one long-lived client.
func (d *Daemon) newLagMonitor() *lagmon.Monitor {
	cl := &kafka.Client{Addr: kafka.TCP(d.brokers...), Transport: d.cfg.Kafka.Transport(), Timeout: 10 * time.Second}
	return lagmon.New(cl, lagmon.Config{
		Interval: d.cfg.LagInterval,
		Log:      d.log,
		Local:    d.cons.RecordTime,
		Targets: func(ctx context.Context) ([]lagmon.Target, error) {
			bs, err := d.registry.ListBindings(ctx, "")
			if err != nil {
				return nil, err
			}
			out := make([]lagmon.Target, len(bs))
			for i, b := range bs {
				out[i] = lagTarget(b)
			}
			return out, nil
		},
	})
}

func lagTarget(b registry.Binding) lagmon.Target {
	return lagmon.Target{Key: b.Key(), Tenant: b.Tenant, Topic: b.Topic, Group: consumerBinding(b).Group()}
}

// lagReader serves the API's lag from the monitor.
type lagReader struct{ d *Daemon }

var _ api.LagReader = lagReader{}

func (l lagReader) Lag(ctx context.Context, b registry.Binding) (wire.Lag, error) {
	cur, err := l.d.lag.Current(ctx, lagTarget(b))
	if err != nil {
		return wire.Lag{}, fmt.Errorf("lag of binding %q: %w", b.ID, err)
	}
	return lagJSON(cur), nil
}

func (l lagReader) History(bindingKey string, since time.Time) (wire.LagHistory, bool) {
	b, ok := l.d.lag.Binding(bindingKey)
	if !ok {
		return wire.LagHistory{}, false
	}
	out := wire.LagHistory{Lag: lagJSON(b), IntervalSeconds: l.d.lag.Interval().Seconds(), History: []wire.PartitionHistory{}}
	for id, pts := range l.d.lag.History(bindingKey, since) {
		if id < 0 {
			continue // failed samples
		}
		ph := wire.PartitionHistory{Partition: id, Points: make([]wire.LagPoint, len(pts))}
		for i, p := range pts {
			ph.Points[i] = wire.LagPoint{T: p.At.UnixMilli(), Lag: p.Lag, Seconds: p.LagSeconds}
		}
		out.History = append(out.History, ph)
	}
	sort.Slice(out.History, func(i, j int) bool { return out.History[i].Partition < out.History[j].Partition })
	return out, true
}

func lagJSON(b lagmon.Binding) wire.Lag {
	out := wire.Lag{At: b.At, Records: b.Lag, Seconds: b.LagSeconds, Status: string(b.Status), Reason: b.Reason,
		ConsumeRate: b.ConsumeRate, ProduceRate: b.ProduceRate, DrainSeconds: b.DrainSeconds, Members: b.Members,
		Partitions: make([]wire.PartitionLag, 0, len(b.Partitions))}
	for _, p := range b.Partitions {
		if p.Partition < 0 {
			continue
		}
		out.Partitions = append(out.Partitions, wire.PartitionLag{Partition: p.Partition, Start: p.Start, End: p.End,
			Committed: p.Committed, Lag: p.Lag, Seconds: p.LagSeconds, Status: string(p.Status), Reason: p.Reason,
			ConsumeRate: p.ConsumeRate, ProduceRate: p.ProduceRate, DrainSeconds: p.DrainSeconds, Error: p.Err})
	}
	return out
}
