package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// maxDeadLetterValue is how much of a dead-lettered value DeadLetters
// returns; the record itself keeps all of it.
const maxDeadLetterValue = 1 << 10

// DeadLetter is one record of a binding's dead-letter topic, as its
// headers describe it.
type DeadLetter struct {
	// At is when it was dead-lettered (the dead-letter record's timestamp):
	// Redrive takes ranges of it.
	At        time.Time
	Partition int   // in the dead-letter topic
	Offset    int64 // in the dead-letter topic
	Reason    string
	ErrorType string
	Status    string
	Attempts  int
	// Source is where the record came from, with its own timestamp.
	Source          kafka.Message
	ValueTruncated  bool
	ValueDroppedMsg string // set when the value was too large to dead-letter
}

// DeadLetters returns up to limit of the latest records b's dead-letter
// topic holds for b, newest first; values are cut at 1 KiB.
func (m *Manager) DeadLetters(ctx context.Context, b Binding, limit int) ([]DeadLetter, error) {
	b = b.withDefaults()
	limit = max(1, min(limit, 1000))
	cl, done := m.adminClient()
	defer done()
	ids, err := partitionsOf(ctx, cl, b.DeadLetterTopic)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return nil, nil // nothing was ever dead-lettered
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", b.ID, err)
	}
	var reqs []kafka.OffsetRequest
	for _, id := range ids {
		reqs = append(reqs, kafka.FirstOffsetOf(id), kafka.LastOffsetOf(id))
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.DeadLetterTopic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: list offsets: %w", b.ID, err)
	}
	var out []DeadLetter
	for _, po := range lo.Topics[b.DeadLetterTopic] {
		if po.Error != nil {
			return nil, fmt.Errorf("dead letters of %s: partition %d: %w", b.ID, po.Partition, po.Error)
		}
		// The last limit records of each partition; a shared dead-letter
		// topic may hold fewer of b's.
		for off := max(po.FirstOffset, po.LastOffset-int64(limit)); off < po.LastOffset; {
			res, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: b.DeadLetterTopic, Partition: po.Partition, Offset: off,
				MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
			if err == nil && res.Error != nil {
				err = res.Error
			}
			if err != nil {
				return nil, fmt.Errorf("dead letters of %s: fetch %d@%d: %w", b.ID, po.Partition, off, err)
			}
			n := 0
			for {
				r, err := res.Records.ReadRecord()
				if err != nil {
					break
				}
				if r.Offset < off {
					continue
				}
				n++
				off = r.Offset + 1
				if dl, ok := deadLetterOf(b.ID, po.Partition, r); ok {
					out = append(out, dl)
				}
			}
			if n == 0 {
				break // nothing more to read (transaction markers, or compaction)
			}
		}
	}
	slices.SortFunc(out, func(a, b DeadLetter) int { return b.At.Compare(a.At) })
	return out[:min(len(out), limit)], nil
}

// deadLetterOf decodes a dead-letter record of binding id; false when it
// belongs to another binding.
func deadLetterOf(id string, partition int, r *kafka.Record) (DeadLetter, bool) {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	if h[HeaderBinding] != id {
		return DeadLetter{}, false
	}
	dl := DeadLetter{At: r.Time, Partition: partition, Offset: r.Offset, Reason: h[HeaderReason],
		ErrorType: h[HeaderErrorType], Status: h[HeaderStatus], ValueDroppedMsg: h[HeaderValueDropped]}
	dl.Attempts, _ = strconv.Atoi(h[HeaderAttempts])
	dl.Source.Topic = h[HeaderTopic]
	dl.Source.Partition, _ = strconv.Atoi(h[HeaderPartition])
	dl.Source.Offset, _ = strconv.ParseInt(h[HeaderOffset], 10, 64)
	if ms, err := strconv.ParseInt(h[HeaderTimestamp], 10, 64); err == nil {
		dl.Source.Time = time.UnixMilli(ms)
	}
	if r.Key != nil {
		dl.Source.Key, _ = readAllLimited(r.Key, maxDeadLetterValue)
	}
	if r.Value != nil {
		dl.Source.Value, dl.ValueTruncated = readAllLimited(r.Value, maxDeadLetterValue)
	}
	return dl, true
}

// readAllLimited reads up to n bytes of b and reports whether more were
// left.
func readAllLimited(b kafka.Bytes, n int) ([]byte, bool) {
	defer b.Close()
	more := b.Len() > n
	buf := make([]byte, min(b.Len(), n))
	k, _ := io.ReadFull(b, buf)
	return buf[:k], more
}
