// Package e2e holds Ember's end-to-end tests: the real emberd binary (with
// its in-process host agent and embedded Kafka-protocol broker) run as a
// subprocess against a private Redis and containerd, driven through the
// HTTP API and a kafka-go producer exactly as a user would.
package e2e
