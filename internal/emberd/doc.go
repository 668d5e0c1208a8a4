// Package emberd assembles Ember's daemon: the Kafka consumers, the engine
// (registry, code store, scheduler, HTTP API) and, on a single machine, the
// host agent in the same process. It is the composition root behind
// cmd/emberd and the end-to-end tests: it owns start-up order and a staged
// shutdown (consumers drain and commit first, then the engine and agent,
// then the embedded broker), and holds nothing a package could own itself.
package emberd
