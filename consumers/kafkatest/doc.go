// Package kafkatest starts a real in-process Kafka-protocol broker (kfake,
// through consumers/embedded) for tests and offers small helpers to create
// topics, produce records with kafka-go and read a topic back. Nothing here is
// a mock: clients talk the Kafka protocol over loopback TCP.
package kafkatest
