package kafkaevent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/segmentio/kafka-go"
)

func sampleMessages() []kafka.Message {
	ts := time.UnixMilli(1595035749700)
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	return []kafka.Message{
		{Topic: "orders", Partition: 3, Offset: 0, Time: ts, Key: []byte("k1"), Value: []byte(`{"id":1}`),
			Headers: []kafka.Header{{Key: "trace", Value: []byte{118, 0xdc, 0, 127, 0x80}}, {Key: "q\"uo\\te\n\x01é", Value: allBytes}}},
		{Topic: "orders", Partition: 3, Offset: 1, Time: ts.Add(time.Millisecond), Key: nil, Value: []byte{0xff, 0xfe, 0}},
		{Topic: "orders", Partition: 3, Offset: 2, Time: ts, Key: []byte{}, Value: nil, Headers: []kafka.Header{{Key: "empty", Value: nil}}},
		{Topic: "payments", Partition: 0, Offset: 1 << 40, Time: ts, Key: []byte("x"), Value: bytes.Repeat([]byte("v"), 1000)},
	}
}

func checkRecord(t *testing.T, got events.KafkaRecord, want *kafka.Message) {
	t.Helper()
	if got.Topic != want.Topic || got.Partition != int64(want.Partition) || got.Offset != want.Offset {
		t.Fatalf("record coordinates: got %s/%d/%d want %s/%d/%d", got.Topic, got.Partition, got.Offset, want.Topic, want.Partition, want.Offset)
	}
	if got.Timestamp.UnixMilli() != want.Time.UnixMilli() {
		t.Fatalf("timestamp: got %d want %d", got.Timestamp.UnixMilli(), want.Time.UnixMilli())
	}
	if got.TimestampType != "CREATE_TIME" {
		t.Fatalf("timestampType %q", got.TimestampType)
	}
	wantKey := ""
	if want.Key != nil {
		wantKey = base64.StdEncoding.EncodeToString(want.Key)
	}
	wantValue := ""
	if want.Value != nil {
		wantValue = base64.StdEncoding.EncodeToString(want.Value)
	}
	if got.Key != wantKey || got.Value != wantValue {
		t.Fatalf("key/value: got %q/%q want %q/%q", got.Key, got.Value, wantKey, wantValue)
	}
	if len(got.Headers) != len(want.Headers) {
		t.Fatalf("headers: got %d want %d", len(got.Headers), len(want.Headers))
	}
	for i, h := range want.Headers {
		if len(got.Headers[i]) != 1 {
			t.Fatalf("header %d has %d keys", i, len(got.Headers[i]))
		}
		v, ok := got.Headers[i][h.Key]
		if !ok {
			t.Fatalf("header %d: key %q missing in %v", i, h.Key, got.Headers[i])
		}
		if !bytes.Equal(v, h.Value) {
			t.Fatalf("header %q: got %v want %v", h.Key, []byte(v), h.Value)
		}
	}
}

func TestEncodeRoundTripsThroughLambdaEvent(t *testing.T) {
	msgs := sampleMessages()
	payload := Encode("b1:9092,b2:9092", msgs)
	if !json.Valid(payload) {
		t.Fatalf("invalid JSON: %s", payload)
	}
	var ev events.KafkaEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if ev.EventSource != "SelfManagedKafka" || ev.BootstrapServers != "b1:9092,b2:9092" {
		t.Fatalf("event header: %+v", ev)
	}
	if len(ev.Records) != 2 || len(ev.Records["orders-3"]) != 3 || len(ev.Records["payments-0"]) != 1 {
		t.Fatalf("record groups: %v", ev.Records)
	}
	for i := 0; i < 3; i++ {
		checkRecord(t, ev.Records["orders-3"][i], &msgs[i])
	}
	checkRecord(t, ev.Records["payments-0"][0], &msgs[3])
	// A nil key is omitted, as Lambda does; an empty one is present.
	if bytes.Contains(payload, []byte(`"offset":1,"timestamp":1595035749701,"timestampType":"CREATE_TIME","key"`)) {
		t.Fatalf("nil key was written")
	}
}

func TestBuilderMatchesEncodeAndRespectsLimit(t *testing.T) {
	msgs := sampleMessages()[:3]
	b := NewBuilder("b1:9092", 0)
	b.Reset("orders", 3)
	for i := range msgs {
		if !b.Add(&msgs[i]) {
			t.Fatalf("unlimited builder refused record %d", i)
		}
	}
	got := b.Finish()
	want := Encode("b1:9092", msgs)
	if !bytes.Equal(got, want) {
		t.Fatalf("builder and Encode differ:\n%s\n%s", got, want)
	}

	// A limit that fits exactly two records.
	b2 := NewBuilder("b1:9092", 0)
	b2.Reset("orders", 3)
	b2.Add(&msgs[0])
	b2.Add(&msgs[1])
	limit := b2.Size()
	lb := NewBuilder("b1:9092", limit)
	lb.Reset("orders", 3)
	if !lb.Add(&msgs[0]) || !lb.Add(&msgs[1]) {
		t.Fatal("records under the limit refused")
	}
	if lb.Add(&msgs[2]) {
		t.Fatal("record over the limit accepted")
	}
	if lb.Len() != 2 || lb.Size() != limit {
		t.Fatalf("refused add changed the builder: len %d size %d limit %d", lb.Len(), lb.Size(), limit)
	}
	ev := lb.Finish()
	if len(ev) != limit {
		t.Fatalf("finished size %d, Size said %d", len(ev), limit)
	}
	var parsed events.KafkaEvent
	if err := json.Unmarshal(ev, &parsed); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if n := len(parsed.Records["orders-3"]); n != 2 {
		t.Fatalf("got %d records", n)
	}

	// One record larger than the limit alone.
	tiny := NewBuilder("b1:9092", EventSize("b1:9092", &msgs[0])-1)
	tiny.Reset("orders", 3)
	if tiny.Add(&msgs[0]) || tiny.Len() != 0 {
		t.Fatal("oversized single record accepted")
	}
}

func TestBuilderFinishHandsOverTheBuffer(t *testing.T) {
	msgs := sampleMessages()
	b := NewBuilder("b", 0)
	b.Reset("orders", 3)
	b.Add(&msgs[0])
	first := b.Finish()
	keep := append([]byte(nil), first...)
	b.Reset("orders", 3)
	b.Add(&msgs[1])
	_ = b.Finish()
	if !bytes.Equal(first, keep) {
		t.Fatal("a later event overwrote an earlier one")
	}
}

func BenchmarkBuilder(b *testing.B) {
	msgs := make([]kafka.Message, 100)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: "orders", Partition: 1, Offset: int64(i), Time: time.Now(),
			Key: []byte(fmt.Sprintf("key-%d", i)), Value: bytes.Repeat([]byte("x"), 100),
			Headers: []kafka.Header{{Key: "trace", Value: []byte("0123456789abcdef")}}}
	}
	bl := NewBuilder("127.0.0.1:9092", 6<<20)
	b.ReportAllocs()
	b.ResetTimer()
	var bytesOut int
	for i := 0; i < b.N; i++ {
		bl.Reset("orders", 1)
		for j := range msgs {
			bl.Add(&msgs[j])
		}
		bytesOut += len(bl.Finish())
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "records/s")
	b.SetBytes(int64(bytesOut / b.N))
}
