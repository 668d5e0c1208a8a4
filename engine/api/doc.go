// Package api serves Ember's HTTP JSON API: functions (deploy with a zip,
// publish versions, synchronous invoke), bindings, producing records to
// topics, platform status, code download for host agents, health and
// Prometheus metrics.
//
// The server is an http.Handler; emberd owns the listener. The tenant of a
// request comes from the X-Ember-Tenant header (default "default"). When a
// token is configured every route except /healthz and /metrics requires
// "Authorization: Bearer <token>". Errors are {"error":{"type","message"}}
// documents; engine error classes (registry.ErrNotFound and friends,
// codestore.ErrInvalid) become HTTP statuses here and nowhere else. A
// function's own failure is not an HTTP error: invoke answers 200 with
// X-Ember-Status, like Lambda's X-Amz-Function-Error.
//
// The engine parts the API needs but does not own are small interfaces
// declared here (Invoker, Producer, LagReader, PoolReader); the JSON
// documents live in engine/api/wire, shared with the Go client in
// engine/api/client.
package api
