package kafkaevent

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

// EventSource is the eventSource Lambda uses for self-managed Kafka.
const EventSource = "SelfManagedKafka"

// TimestampType is the timestampType written for every record. kafka-go does
// not expose the record's timestamp type; producers set CREATE_TIME by default.
const TimestampType = "CREATE_TIME"

// footer closes the partition's array, the records object and the event.
const footer = "]}}"

// Builder assembles the event of one batch of records from a single
// topic-partition, checking the encoded size as it goes. The zero value is
// not usable; make one with NewBuilder. A Builder is not safe for concurrent use.
type Builder struct {
	bootstrap string
	maxBytes  int
	buf       []byte
	n         int
	sizeHint  int
}

// NewBuilder returns a Builder that writes bootstrapServers (a comma separated
// list) into every event and refuses records once an event would exceed
// maxBytes; maxBytes <= 0 means no limit.
func NewBuilder(bootstrapServers string, maxBytes int) *Builder {
	return &Builder{bootstrap: bootstrapServers, maxBytes: maxBytes, sizeHint: 1024}
}

// Reset starts a new event for topic and partition, discarding any records
// added since the last Finish.
func (b *Builder) Reset(topic string, partition int) {
	if cap(b.buf) == 0 {
		b.buf = make([]byte, 0, b.sizeHint)
	}
	b.buf = b.buf[:0]
	b.n = 0
	b.buf = append(b.buf, `{"eventSource":"`...)
	b.buf = append(b.buf, EventSource...)
	b.buf = append(b.buf, `","bootstrapServers":`...)
	b.buf = appendString(b.buf, b.bootstrap)
	b.buf = append(b.buf, `,"records":{`...)
	b.buf = appendPartitionKey(b.buf, topic, partition)
	b.buf = append(b.buf, ":["...)
}

// Add appends m to the event and reports whether it fit. When the event with
// m would exceed the limit, Add leaves the event as it was and returns false:
// with Len() == 0 that means m alone is too large for any event.
func (b *Builder) Add(m *kafka.Message) bool {
	mark := len(b.buf)
	if b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	b.buf = AppendRecord(b.buf, m)
	if b.maxBytes > 0 && len(b.buf)+len(footer) > b.maxBytes {
		b.buf = b.buf[:mark]
		return false
	}
	b.n++
	return true
}

// Len returns the number of records in the current event.
func (b *Builder) Len() int { return b.n }

// Size returns the size in bytes the event would have if finished now.
func (b *Builder) Size() int { return len(b.buf) + len(footer) }

// Finish closes the event and returns it. The returned slice belongs to the
// caller: the Builder never touches it again. Call Reset before the next event.
func (b *Builder) Finish() []byte {
	out := append(b.buf, footer...)
	// The next event's buffer is about this one's size: a partition's
	// events are alike, and one large event must not make every later
	// small one allocate as much. Never beyond the limit, never tiny.
	b.sizeHint = max(1024, len(out)+len(out)/4)
	if b.maxBytes > 0 {
		b.sizeHint = min(b.sizeHint, b.maxBytes)
	}
	b.buf = nil
	b.n = 0
	return out
}

// EventSize returns the size of the event that would carry m alone.
func EventSize(bootstrapServers string, m *kafka.Message) int {
	b := NewBuilder(bootstrapServers, 0)
	b.Reset(m.Topic, m.Partition)
	b.Add(m)
	return b.Size()
}

// Encode returns the event for msgs, which may span topics and partitions;
// records are grouped by "topic-partition" keeping their relative order.
func Encode(bootstrapServers string, msgs []kafka.Message) []byte {
	type tp struct {
		topic     string
		partition int
	}
	var order []tp
	groups := make(map[tp][]int)
	for i := range msgs {
		k := tp{msgs[i].Topic, msgs[i].Partition}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	buf := make([]byte, 0, 256+len(msgs)*256)
	buf = append(buf, `{"eventSource":"`...)
	buf = append(buf, EventSource...)
	buf = append(buf, `","bootstrapServers":`...)
	buf = appendString(buf, bootstrapServers)
	buf = append(buf, `,"records":{`...)
	for gi, k := range order {
		if gi > 0 {
			buf = append(buf, ',')
		}
		buf = appendPartitionKey(buf, k.topic, k.partition)
		buf = append(buf, ":["...)
		for j, i := range groups[k] {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = AppendRecord(buf, &msgs[i])
		}
		buf = append(buf, ']')
	}
	return append(buf, "}}"...)
}

// AppendRecord appends the JSON object of one record to buf.
func AppendRecord(buf []byte, m *kafka.Message) []byte {
	buf = append(buf, `{"topic":`...)
	buf = appendString(buf, m.Topic)
	buf = append(buf, `,"partition":`...)
	buf = strconv.AppendInt(buf, int64(m.Partition), 10)
	buf = append(buf, `,"offset":`...)
	buf = strconv.AppendInt(buf, m.Offset, 10)
	buf = append(buf, `,"timestamp":`...)
	var ms int64
	if !m.Time.IsZero() {
		ms = m.Time.UnixMilli()
	}
	buf = strconv.AppendInt(buf, ms, 10)
	buf = append(buf, `,"timestampType":"`...)
	buf = append(buf, TimestampType...)
	buf = append(buf, '"')
	if m.Key != nil {
		buf = append(buf, `,"key":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, m.Key)
		buf = append(buf, '"')
	}
	if m.Value != nil {
		buf = append(buf, `,"value":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, m.Value)
		buf = append(buf, '"')
	}
	buf = append(buf, `,"headers":[`...)
	for i, h := range m.Headers {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '{')
		buf = appendString(buf, h.Key)
		buf = append(buf, ":["...)
		for j, c := range h.Value {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(int8(c)), 10)
		}
		buf = append(buf, "]}"...)
	}
	return append(buf, "]}"...)
}

func appendPartitionKey(buf []byte, topic string, partition int) []byte {
	// Topic names are [a-zA-Z0-9._-] in Kafka, but escape anyway.
	buf = appendString(buf, topic)
	buf = buf[:len(buf)-1]
	buf = append(buf, '-')
	buf = strconv.AppendInt(buf, int64(partition), 10)
	return append(buf, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD like encoding/json.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// PartitionKey is the key of a partition's records in the event,
// "<topic>-<partition>", which also names the partition in a partial batch
// response's itemIdentifier.
func PartitionKey(topic string, partition int) string {
	return topic + "-" + strconv.Itoa(partition)
}
