package kafkaevent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/segmentio/kafka-go"
)

// FuzzEncode: any records (keys, values, header names and values, topic
// names, whatever their bytes) encode to JSON that aws-lambda-go's
// events.KafkaEvent parses back to the same keys, values and headers.
func FuzzEncode(f *testing.F) {
	f.Add("orders", 3, []byte("key"), []byte(`{"a":1}`), "h", []byte("v"), "b:9092")
	f.Add("t", 0, []byte(nil), []byte{0, 0xff, '"', '\\', '\n'}, "\u2028", []byte{0xc3, 0x28}, "")
	f.Add("a.b-c_d", 2147483647, []byte("\x00"), []byte(""), "", []byte(nil), "\"quoted\"")
	f.Fuzz(func(t *testing.T, topic string, partition int, key, value []byte, hk string, hv []byte, bootstrap string) {
		m := kafka.Message{Topic: topic, Partition: partition, Offset: 42, Key: key, Value: value,
			Time: time.UnixMilli(1700000000000), Headers: []kafka.Header{{Key: hk, Value: hv}}}
		b := Encode(bootstrap, []kafka.Message{m})
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %q", b)
		}
		var ev events.KafkaEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("events.KafkaEvent: %v\n%q", err, b)
		}
		if len(ev.Records) != 1 {
			t.Fatalf("%d partitions in %q", len(ev.Records), b)
		}
		for _, recs := range ev.Records {
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			r := recs[0]
			gotV, err := base64.StdEncoding.DecodeString(r.Value)
			if err != nil || !bytes.Equal(gotV, value) {
				t.Fatalf("value %q, want %q (%v)", gotV, value, err)
			}
			gotK, err := base64.StdEncoding.DecodeString(r.Key)
			if err != nil || !bytes.Equal(gotK, key) {
				t.Fatalf("key %q, want %q (%v)", gotK, key, err)
			}
			if utf8.ValidString(topic) && r.Topic != topic {
				t.Fatalf("topic %q, want %q", r.Topic, topic)
			}
			if len(r.Headers) != 1 {
				t.Fatalf("headers %v", r.Headers)
			}
			for k, v := range r.Headers[0] {
				if utf8.ValidString(hk) && k != hk {
					t.Fatalf("header name %q, want %q", k, hk)
				}
				got := make([]byte, len(v))
				for i, x := range v {
					got[i] = byte(x)
				}
				if !bytes.Equal(got, hv) && (hv != nil || len(v) != 0) {
					t.Fatalf("header value %v, want %v", got, hv)
				}
			}
		}
	})
}
