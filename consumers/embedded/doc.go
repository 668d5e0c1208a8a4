// Package embedded runs a Kafka-protocol broker inside the process: franz-go's
// kfake, with an optional data directory so topics, records and committed
// offsets survive a restart, and a fixed listen address so clients can be
// pointed at it. emberd uses it as its built-in broker when no external Kafka
// is configured, and consumers/kafkatest uses it in tests.
//
// kfake only enforces retention when asked (or when a topic sets retention
// configs explicitly), so the broker calls ApplyRetention on a timer.
package embedded
