package lagmon

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Monitor's newest samples: offsets and lag under
// kafka_exporter's names (so that dashboards built for it work), the time
// lag under kafka-lag-exporter's idea (kafka_consumergroup_lag_seconds),
// and Ember's per-binding figures.
type Collector struct {
	m *Monitor
}

// Collector returns the Monitor's Prometheus collector.
func (m *Monitor) Collector() *Collector { return &Collector{m: m} }

var (
	partLabels  = []string{"consumergroup", "topic", "partition"}
	descLag     = prometheus.NewDesc("kafka_consumergroup_lag", "Records the consumer group has not committed, per partition (as kafka_exporter).", partLabels, nil)
	descCurrent = prometheus.NewDesc("kafka_consumergroup_current_offset", "The consumer group's committed offset per partition (as kafka_exporter; -1: never committed).", partLabels, nil)
	descLagSec  = prometheus.NewDesc("kafka_consumergroup_lag_seconds", "Age of the oldest record the consumer group has not committed, per partition (0 without lag).", partLabels, nil)
	descTopic   = prometheus.NewDesc("kafka_topic_partition_current_offset", "The next offset to be written, per partition (as kafka_exporter).", []string{"topic", "partition"}, nil)
	descOldest  = prometheus.NewDesc("kafka_topic_partition_oldest_offset", "The oldest retained offset, per partition (as kafka_exporter).", []string{"topic", "partition"}, nil)
	descEmber   = prometheus.NewDesc("ember_consumer_lag_records", "Records not yet committed by a binding's consumer group, per partition.", []string{"binding", "topic", "partition"}, nil)
	descBLag    = prometheus.NewDesc("ember_binding_lag_records", "Records a binding's consumer group has not committed, all partitions.", []string{"binding"}, nil)
	descBSec    = prometheus.NewDesc("ember_binding_lag_seconds", "Age of the oldest record a binding has not committed, over its partitions.", []string{"binding"}, nil)
	descBRate   = prometheus.NewDesc("ember_binding_consume_rate", "Records per second a binding commits, over the status window.", []string{"binding"}, nil)
	descBDrain  = prometheus.NewDesc("ember_binding_drain_seconds", "Estimated seconds until a binding has no lag at the current rates (-1: the lag does not shrink).", []string{"binding"}, nil)
	descBStatus = prometheus.NewDesc("ember_binding_lag_status", "1 for a binding's lag status (OK, REWIND, WARN, STALL, STOP, ERR), 0 for the others.", []string{"binding", "status"}, nil)
	descSources = prometheus.NewDesc("ember_lag_timestamp_reads_total", "Timestamps of oldest uncommitted records the lag monitor needed, by source: cache (same offset as the last sample), consumer (held by this emberd's consumers), broker (one Fetch).", []string{"source"}, nil)
	descPStatus = prometheus.NewDesc("ember_partition_lag_status", "1 for a partition's lag status, 0 for the others.", []string{"binding", "partition", "status"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descCurrent, descLagSec, descTopic, descOldest, descEmber, descBLag, descBSec, descBRate, descBDrain, descBStatus, descPStatus, descSources} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A topic or a group shared by
// several bindings is exported once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	cache, local, broker := c.m.TimestampSources()
	for src, n := range map[string]int64{"cache": cache, "consumer": local, "broker": broker} {
		ch <- prometheus.MustNewConstMetric(descSources, prometheus.CounterValue, float64(n), src)
	}
	seenTopic := map[topicPartition]bool{}
	seenGroup := map[[2]string]map[int]bool{}
	for _, b := range c.m.Bindings() {
		gauge(descBLag, float64(b.Lag), b.Key)
		gauge(descBSec, b.LagSeconds, b.Key)
		gauge(descBRate, b.ConsumeRate, b.Key)
		gauge(descBDrain, b.DrainSeconds, b.Key)
		for _, s := range Statuses {
			gauge(descBStatus, boolf(b.Status == s), b.Key, string(s))
		}
		gk := [2]string{b.Group, b.Topic}
		if seenGroup[gk] == nil {
			seenGroup[gk] = map[int]bool{}
		}
		for _, p := range b.Partitions {
			if p.Partition < 0 || p.Err != "" {
				continue
			}
			part := strconv.Itoa(p.Partition)
			gauge(descEmber, float64(p.Lag), b.Key, b.Topic, part)
			for _, s := range Statuses {
				gauge(descPStatus, boolf(p.Status == s), b.Key, part, string(s))
			}
			if !seenGroup[gk][p.Partition] {
				seenGroup[gk][p.Partition] = true
				gauge(descLag, float64(p.Lag), b.Group, b.Topic, part)
				gauge(descCurrent, float64(p.Committed), b.Group, b.Topic, part)
				gauge(descLagSec, p.LagSeconds, b.Group, b.Topic, part)
			}
			if tp := (topicPartition{b.Topic, p.Partition}); !seenTopic[tp] {
				seenTopic[tp] = true
				gauge(descTopic, float64(p.End), b.Topic, part)
				gauge(descOldest, float64(p.Start), b.Topic, part)
			}
		}
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
