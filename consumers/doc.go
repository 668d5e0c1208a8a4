// Package consumers is Ember's Kafka side: for every binding (topic to
// function) it is a member of the binding's consumer group, batches each
// assigned partition's records into the Lambda self-managed Kafka event
// (consumers/kafkaevent), hands each batch to an Invoker, and commits
// offsets only for a contiguous prefix of finished records.
//
// The parts, one job each:
//
//   - consumer.go: a binding's lifetime (wait for the topic, pin the
//     starting position, join the group, run its generations, leave).
//   - start.go: the starting position (latest, at_timestamp) pinned before
//     the first join; admin.go: offset and metadata queries.
//   - generation.go: one generation's partitions, rewinds applied once
//     (their id in the commit metadata), periodic commits in the
//     generation, and revocation: stop starting invocations, drain within
//     the rebalance timeout while heartbeating, commit the finished
//     prefix, drop the rest. A generation the coordinator refuses never
//     commits again.
//   - partition.go: one partition: its own reader (so a partition that
//     waits never holds back another), filters, lanes of workers by
//     ordering mode (partition: one batch in flight; key: one lane per key
//     hash, MaxConcurrency lanes; none: MaxConcurrency workers), a byte
//     budget, and records lost to retention counted as expired.
//   - offsets.go: the tracker of finished offsets (the commit point).
//   - handle.go: a batch to its end: retries (MaxRetryAttempts, -1 until
//     MaxRecordAge), record age, bisect on error, partial batch responses.
//   - sinks.go: dead-letter and result topics, created on first use, never
//     written past their max.message.bytes.
//   - redrive.go: dead-lettered records fed back to the function.
//
// Failures are of two kinds (see invoke.Result): a function failure
// (Result Status other than OK, an invalid partial batch response, a
// response too large for the result topic) is retried up to
// MaxRetryAttempts with exponential backoff, then its records go to the
// dead-letter topic and are committed; a platform failure (the Invoker
// returned an error, a sink unwritable) is retried for as long as the
// partition is owned, counted in BindingStats.PlatformErrors, and never
// dead-lettered. Delivery is at least once: after a rebalance that had to
// cancel invocations, or a crash, records can be invoked again.
//
// The package knows nothing of containers or Redis: emberd maps the
// registry's bindings into Binding (their settings are one definition,
// package consumers/settings) and passes an Invoker backed by the engine.
package consumers
