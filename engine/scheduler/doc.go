// Package scheduler runs invocations: it resolves the function version,
// claims an instance from the Redis-held pools (one Lua script per claim, in
// the order hot container, tenant's active instance, warming pool; see
// engine/pool), dispatches to the owning host agent over a kept-open gRPC
// connection, and releases the claim with the version now hot there.
//
// When no instance is free the invocation waits, up to its deadline, in a
// bounded queue: it asks agents for a new instance of the class (the demand
// channel) and wakes on the pool's "freed" channel. The order is FIFO
// across emberds: a waiter holds a ticket in the tenant's queue for the
// class in Redis, and only the head may claim. Beyond MaxWaiting
// waiters it fails fast with ErrResourceExhausted, which consumers treat as a
// platform error to retry with backoff.
//
// Function failures (handler error, timeout, crash) come back in the Result;
// an error return means the platform failed and nothing is known to have run.
package scheduler
