// Package kafkaevent encodes Kafka records, as read by kafka-go, into the JSON
// event AWS Lambda sends for a self-managed Kafka event source mapping, so
// that a handler written against events.KafkaEvent from
// github.com/aws/aws-lambda-go/events runs unchanged on Ember.
//
// The shape is:
//
//	{"eventSource":"SelfManagedKafka","bootstrapServers":"b1:9092,b2:9092",
//	 "records":{"topic-0":[{"topic":"topic","partition":0,"offset":5,
//	   "timestamp":1595035749700,"timestampType":"CREATE_TIME",
//	   "key":"<base64>","value":"<base64>","headers":[{"k":[118,-36]}]}]}}
//
// Header values are arrays of signed bytes (Java's byte), which is what
// events.JSONNumberBytes expects. A nil key or value is omitted, as Lambda
// does.
//
// Encoding is append-style with no reflection. A Builder assembles the event
// of one partition's batch record by record and refuses a record that would
// make the event larger than its limit, which is how consumers/ cuts batches
// at Lambda's 6 MiB payload limit.
package kafkaevent
