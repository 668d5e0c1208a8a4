// Package logship sends a function's output, line by line, and a REPORT
// record per invocation to the tenant's logging service over OTLP/HTTP
// (protobuf, POST to the service's /v1/logs URL, the service's credentials
// in the Authorization header). ember-init runs one Shipper per configured
// logging service; the instance reaches the network only through its host
// agent's relay (Config.Dial).
//
// A Shipper never delays the function: Add only appends to a bounded
// buffer (records and bytes) and returns; a full buffer drops the record
// and counts it. One goroutine sends batches (up to MaxBatch records, or
// what arrived within Linger); a batch the service could not take (no
// connection, 429, 5xx) is retried with backoff up to MaxAttempts times,
// then dropped and counted as failed; one it refuses (401, 400...) is
// failed at once. Stats reports what was sent, dropped and failed.
//
// Records carry OpenTelemetry's FaaS attributes: the resource names the
// function (service.name, faas.name, faas.version, faas.instance = the
// container's log stream) and Ember's tenant and instance; each record has
// faas.invocation_id and ember.record ("function" for a line of output,
// "platform.report" for a REPORT, whose figures are attributes too).
package logship
