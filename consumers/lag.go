package consumers

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/segmentio/kafka-go"
)

// PartitionLag is how far a binding's group is behind on one partition.
type PartitionLag struct {
	Partition int
	// Start is the oldest retained offset, End the next offset to be written.
	Start, End int64
	// Committed is the group's committed offset (the next record to
	// process), -1 when the group never committed on this partition.
	Committed int64
	// Lag is End - Committed, or End - Start when nothing was committed.
	Lag int64
}

// Lag returns the lag of binding b's consumer group on each partition of its
// topic, in partition order. b need not be running.
func (m *Manager) Lag(ctx context.Context, b Binding) ([]PartitionLag, error) {
	b = b.withDefaults()
	cl, done := m.adminClient()
	defer done()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{b.Topic}})
	if err != nil {
		return nil, fmt.Errorf("lag of binding %q: metadata: %w", b.ID, err)
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("lag of binding %q: metadata returned %d topics", b.ID, len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("lag of binding %q: topic %q: %w", b.ID, b.Topic, err)
	}
	var ids []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		ids = append(ids, p.ID)
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	sort.Ints(ids)
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.Topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("lag of binding %q: list offsets: %w", b.ID, err)
	}
	out := make(map[int]*PartitionLag, len(ids))
	for _, id := range ids {
		out[id] = &PartitionLag{Partition: id, Committed: -1}
	}
	for _, po := range lo.Topics[b.Topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("lag of binding %q: list offsets of partition %d: %w", b.ID, po.Partition, po.Error)
		}
		if pl := out[po.Partition]; pl != nil {
			pl.Start, pl.End = po.FirstOffset, po.LastOffset
		}
	}
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: b.GroupID, Topics: map[string][]int{b.Topic: ids}})
	if err != nil {
		return nil, fmt.Errorf("lag of binding %q: offset fetch: %w", b.ID, err)
	}
	switch {
	case of.Error == nil:
		for _, p := range of.Topics[b.Topic] {
			if p.Error != nil {
				return nil, fmt.Errorf("lag of binding %q: committed offset of partition %d: %w", b.ID, p.Partition, p.Error)
			}
			if pl := out[p.Partition]; pl != nil && p.CommittedOffset >= 0 {
				pl.Committed = p.CommittedOffset
			}
		}
	case errors.Is(of.Error, kafka.GroupIdNotFound):
		// The group never committed: every partition stays at -1.
	default:
		return nil, fmt.Errorf("lag of binding %q: offset fetch for group %q: %w", b.ID, b.GroupID, of.Error)
	}
	res := make([]PartitionLag, 0, len(ids))
	for _, id := range ids {
		pl := out[id]
		if pl.Committed >= 0 {
			pl.Lag = max(0, pl.End-pl.Committed)
		} else {
			pl.Lag = pl.End - pl.Start
		}
		res = append(res, *pl)
	}
	return res, nil
}
