// Package asyncinv runs asynchronous invocations ("Event" invocations): an
// accepted invocation is recorded in Redis and queued durably on a Kafka
// topic (ember.async) before the caller gets 202; emberd's consumers of
// that topic (a consumer group, so replicas share the queue and a crashed
// replica's invocations run elsewhere) run each one with the function's
// retry policy (registry.AsyncConfig: retries after function errors, a
// maximum event age) and send a record of the outcome to the function's
// success or failure destination (a topic or another function, invoked
// asynchronously in turn), in Lambda's destination record format.
//
// Delivery is at least once: after a crash an invocation may run again,
// and its outcome may reach its destination twice (the record carries the
// invocation id). The Redis record of an invocation (state, attempts,
// result) answers `ember invocation get ID` for 24 hours after it ended.
//
// The parts: request.go (the queued request and the destination record),
// state.go (the Redis record), processor.go (accept, run, retry, deliver).
package asyncinv
