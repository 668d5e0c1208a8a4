package lagmon

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// Offsets is where a consumer group stands on one partition.
type Offsets struct {
	Partition int
	// Start is the oldest retained offset, End the next offset to be written.
	Start, End int64
	// Committed is the group's committed offset (the next record to
	// process), -1 when the group never committed on this partition.
	Committed int64
	// Lag is End - Committed, or End - Start when nothing was committed.
	Lag int64
}

// Oldest is the offset of the oldest record the group has not committed:
// Committed, or Start when nothing was committed or retention removed the
// committed record.
func (o Offsets) Oldest() int64 {
	if o.Committed < o.Start {
		return o.Start
	}
	return o.Committed
}

// Expired reports whether retention removed records the group had not
// committed.
func (o Offsets) Expired() bool { return o.Committed >= 0 && o.Committed < o.Start }

// ReadOffsets returns group's offsets on every partition of topic, in
// partition order.
func ReadOffsets(ctx context.Context, cl *kafka.Client, topic, group string) ([]Offsets, error) {
	parts, err := readEnds(ctx, cl, []string{topic})
	if err != nil {
		return nil, err
	}
	if err := parts[topic].err; err != nil {
		return nil, err
	}
	committed, err := readCommitted(ctx, cl, group, topic, parts[topic].ids())
	if err != nil {
		return nil, err
	}
	return combine(parts[topic], committed), nil
}

// topicEnds is one topic's partitions with their start and end offsets.
type topicEnds struct {
	start, end map[int]int64
	err        error
}

func (t topicEnds) ids() []int {
	ids := make([]int, 0, len(t.end))
	for id := range t.end {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// readEnds reads the partitions of topics and their start and end offsets
// in one Metadata and one ListOffsets request. A topic that cannot be read
// has its err set.
func readEnds(ctx context.Context, cl *kafka.Client, topics []string) (map[string]topicEnds, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	out := make(map[string]topicEnds, len(topics))
	reqs := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			out[t.Name] = topicEnds{err: fmt.Errorf("topic %q: %w", t.Name, t.Error)}
			continue
		}
		te := topicEnds{start: map[int]int64{}, end: map[int]int64{}}
		for _, p := range t.Partitions {
			te.start[p.ID], te.end[p.ID] = 0, 0
			reqs[t.Name] = append(reqs[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
		out[t.Name] = te
	}
	for _, name := range topics {
		if _, ok := out[name]; !ok {
			out[name] = topicEnds{err: fmt.Errorf("topic %q: %w", name, kafka.UnknownTopicOrPartition)}
		}
	}
	if len(reqs) == 0 {
		return out, nil
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	for name, ps := range lo.Topics {
		te, ok := out[name]
		if !ok || te.err != nil {
			continue
		}
		for _, po := range ps {
			if po.Error != nil {
				te.err = fmt.Errorf("offsets of %s/%d: %w", name, po.Partition, po.Error)
				break
			}
			te.start[po.Partition], te.end[po.Partition] = po.FirstOffset, po.LastOffset
		}
		out[name] = te
	}
	return out, nil
}

// readCommitted returns group's committed offset per partition (-1: none).
func readCommitted(ctx context.Context, cl *kafka.Client, group, topic string, ids []int) (map[int]int64, error) {
	out := make(map[int]int64, len(ids))
	for _, id := range ids {
		out[id] = -1
	}
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, fmt.Errorf("offset fetch for group %q: %w", group, err)
	}
	switch {
	case of.Error == nil:
		for _, p := range of.Topics[topic] {
			if p.Error != nil {
				return nil, fmt.Errorf("committed offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			if _, ok := out[p.Partition]; ok && p.CommittedOffset >= 0 {
				out[p.Partition] = p.CommittedOffset
			}
		}
	case errors.Is(of.Error, kafka.GroupIdNotFound):
		// The group never committed: every partition stays at -1.
	default:
		return nil, fmt.Errorf("offset fetch for group %q: %w", group, of.Error)
	}
	return out, nil
}

func combine(te topicEnds, committed map[int]int64) []Offsets {
	ids := te.ids()
	res := make([]Offsets, 0, len(ids))
	for _, id := range ids {
		o := Offsets{Partition: id, Start: te.start[id], End: te.end[id], Committed: committed[id]}
		o.Lag = max(0, o.End-o.Oldest())
		res = append(res, o)
	}
	return res
}

// readTimestamp returns the timestamp of the record at offset, or of the
// first one after it (a transaction marker or a compacted record has none
// of its own).
func readTimestamp(ctx context.Context, cl *kafka.Client, topic string, partition int, offset int64) (time.Time, error) {
	res, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: 64 << 10, MaxWait: 100 * time.Millisecond})
	if err != nil {
		return time.Time{}, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, err)
	}
	if res.Error != nil {
		return time.Time{}, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, res.Error)
	}
	if res.Records == nil {
		return time.Time{}, fmt.Errorf("fetch %s/%d@%d: no records", topic, partition, offset)
	}
	for {
		r, err := res.Records.ReadRecord()
		if err != nil {
			return time.Time{}, fmt.Errorf("fetch %s/%d@%d: no record at or after it: %w", topic, partition, offset, err)
		}
		if r.Offset >= offset {
			return r.Time, nil
		}
	}
}
