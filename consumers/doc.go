// Package consumers is Ember's Kafka side: for every binding (topic to
// function) it runs one kafka-go consumer-group Reader, batches records per
// partition into the Lambda self-managed Kafka event (consumers/kafkaevent),
// hands each batch to an Invoker, and commits offsets only for records that
// are fully handled.
//
// Per binding, one fetch loop dispatches records into per-partition queues;
// each partition has one batch in flight at a time, so records of a partition
// are invoked in order while partitions run concurrently. A batch holds up to
// BatchSize records already queued (waiting up to BatchWindow for more when it
// is set) and is cut before its event would exceed MaxPayloadBytes.
//
// The fetch loop blocks when a partition's queue is full (twice BatchSize,
// at least 256 records), which pauses fetching for the whole binding until
// that partition catches up. After a rebalance, a worker finishes the records
// it already queued for a partition it lost; records this process already
// finished are skipped when redelivered (BindingStats.Duplicates).
//
// Failures are of two kinds (see invoke.Result): a function failure (Result
// Status other than OK) is retried up to Retry.MaxAttempts with exponential
// backoff, then the batch's records go to the dead-letter topic and are
// committed; a platform failure (the Invoker returned an error) is retried
// with backoff for as long as the binding runs and is never dead-lettered nor
// committed, so the records are redelivered after a restart. Delivery is
// at-least-once: after a rebalance or a crash, records can be invoked again.
//
// The package knows nothing of containers or Redis: emberd maps the
// registry's bindings into Binding and passes an Invoker backed by the engine.
package consumers
