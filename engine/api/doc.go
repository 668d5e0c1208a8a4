// Package api serves Ember's HTTP JSON API: tenants and their keys
// (administrator), functions (deploy with a zip, publish versions,
// synchronous invoke), topics (create, grant, produce), bindings, platform
// status, code download, health and Prometheus metrics.
//
// The server is an http.Handler; emberd owns the listener. Every route but
// /healthz needs "Authorization: Bearer <key>": no or an unknown key is
// 401. The key alone says who is asking (package tenants): a tenant's key
// acts as that tenant and only sees its own functions, versions, bindings,
// topics and packages (another tenant's are 404, as if they did not
// exist); the administrator key manages tenants and grants and is refused
// (403) on routes that act as a tenant, as a tenant's key is on the
// administrator's. /metrics takes the administrator key or a separate
// scrape token. Errors are {"error":{"type","message"}}
// documents; engine error classes (registry.ErrNotFound and friends,
// codestore.ErrInvalid) become HTTP statuses here and nowhere else. A
// function's own failure is not an HTTP error: invoke answers 200 with
// X-Ember-Status, like Lambda's X-Amz-Function-Error.
//
// The engine parts the API needs but does not own are small interfaces
// declared here (Invoker, Producer, TopicAdmin, TenantStore, LagReader,
// PoolReader); the JSON
// documents live in engine/api/wire, shared with the Go client in
// engine/api/client.
package api
