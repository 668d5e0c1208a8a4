package consumers

import "sync/atomic"

// BindingStats is a snapshot of a running binding's counters in this
// process since it started.
type BindingStats struct {
	// RecordsIn counts records fetched.
	RecordsIn int64
	// Filtered counts records that matched none of the binding's filters:
	// committed without an invocation.
	Filtered int64
	// Expired counts records removed by retention before they were fetched
	// (a partition that fell behind by more than retention.ms). They are
	// lost to the binding; each gap is logged as an error.
	Expired int64
	// Invocations counts Invoke calls, retries included.
	Invocations    int64
	FunctionErrors int64
	// PlatformErrors counts Ember's own failures (no capacity, agent
	// unreachable, a sink topic unwritable): retried without limit.
	PlatformErrors int64
	// DLQRecords counts records written to the dead-letter topic, of which
	// AgeDropped were older than MaxRecordAge.
	DLQRecords int64
	AgeDropped int64
	// InFlight is records fetched and not yet finished.
	InFlight int64
	// Partitions is how many partitions this process owns now, and
	// Generation the consumer group generation it owns them in (0: none).
	Partitions int64
	Generation int64
	// Rebalances counts generations this process joined.
	Rebalances int64
	// Commits counts successful offset commits.
	Commits int64
}

type counters struct {
	recordsIn, filtered, expired, invocations, functionErrors, platformErrors atomic.Int64
	dlq, ageDropped, inFlight, partitions, generation, rebalances, commits    atomic.Int64
}

func (c *counters) snapshot() BindingStats {
	return BindingStats{
		RecordsIn: c.recordsIn.Load(), Filtered: c.filtered.Load(), Expired: c.expired.Load(),
		Invocations: c.invocations.Load(), FunctionErrors: c.functionErrors.Load(),
		PlatformErrors: c.platformErrors.Load(), DLQRecords: c.dlq.Load(), AgeDropped: c.ageDropped.Load(),
		InFlight: c.inFlight.Load(), Partitions: c.partitions.Load(), Generation: c.generation.Load(),
		Rebalances: c.rebalances.Load(), Commits: c.commits.Load(),
	}
}
