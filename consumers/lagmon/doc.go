// Package lagmon watches how far each binding's consumer group is behind:
// per partition the offset lag, the time lag (the age of the oldest record
// not yet committed), consume and produce rates, an estimated time to
// drain, and a status over a sliding window in the manner of Burrow's
// evaluation rules (OK, WARN, STALL, STOP, ERR, REWIND; see Evaluate).
//
// One Monitor per emberd samples every binding through one long-lived
// kafka-go Client: per round one Metadata, one ListOffsets, one
// DescribeGroups, one OffsetFetch per group and, for a partition whose
// committed offset moved, one small Fetch of the record at it (the
// timestamp of an offset never changes, so it is read once). It keeps an
// hour of samples per partition for charts, and exports them to
// Prometheus under kafka_exporter's metric names (Collector).
//
// The parts: offsets.go (one group's offsets on one topic), status.go (the
// rules, a pure function), monitor.go (sampling and history), metrics.go
// (the Prometheus collector).
package lagmon
