package consumers

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/settings"
)

// adminClient returns a client with a transport of its own, for admin
// requests that must see the cluster as it is now: a kafka-go Transport
// answers metadata from a cache refreshed every 6 s, which would report a
// new topic as unknown. Call the returned func when done.
func (m *Manager) adminClient() (*kafka.Client, func()) {
	tr := m.conn.Transport()
	return &kafka.Client{Addr: kafka.TCP(m.brokers...), Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
}

// partitions returns the partition ids of topic; an error wrapping
// kafka.UnknownTopicOrPartition when it does not exist.
func (m *Manager) partitions(ctx context.Context, topic string) ([]int, error) {
	cl, done := m.adminClient()
	defer done()
	return partitionsOf(ctx, cl, topic)
}

func partitionsOf(ctx context.Context, cl *kafka.Client, topic string) ([]int, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("metadata returned %d topics", len(md.Topics))
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("topic %q: %w", topic, err)
	}
	ids := make([]int, 0, len(md.Topics[0].Partitions))
	for _, p := range md.Topics[0].Partitions {
		ids = append(ids, p.ID)
	}
	return ids, nil
}

// listOffsets returns, for each of ids, the offset that req (FirstOffsetOf,
// LastOffsetOf) asks for.
func listOffsets(ctx context.Context, cl *kafka.Client, topic string, ids []int, req func(int) kafka.OffsetRequest, first bool) (map[int]int64, error) {
	reqs := make([]kafka.OffsetRequest, len(ids))
	for i, id := range ids {
		reqs[i] = req(id)
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	out := make(map[int]int64, len(ids))
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of partition %d: %w", po.Partition, po.Error)
		}
		if first {
			out[po.Partition] = po.FirstOffset
		} else {
			out[po.Partition] = po.LastOffset
		}
	}
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			return nil, fmt.Errorf("no offset for partition %d", id)
		}
	}
	return out, nil
}

// offsetsAt returns, for each of ids, the offset of the first record whose
// timestamp is at or after t, or the partition's end when there is none.
func offsetsAt(ctx context.Context, cl *kafka.Client, topic string, ids []int, t time.Time) (map[int]int64, error) {
	end, err := listOffsets(ctx, cl, topic, ids, kafka.LastOffsetOf, false)
	if err != nil {
		return nil, err
	}
	reqs := make([]kafka.OffsetRequest, len(ids))
	for i, id := range ids {
		reqs[i] = kafka.TimeOffsetOf(id, t)
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets by time: %w", err)
	}
	out := make(map[int]int64, len(ids))
	for _, po := range lo.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offset by time of partition %d: %w", po.Partition, po.Error)
		}
		// kafka-go files a found record under Offsets; "none at or after
		// t" comes back as offset -1.
		for off := range po.Offsets {
			if off >= 0 {
				out[po.Partition] = off
			}
		}
	}
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			out[id] = end[id]
		}
	}
	return out, nil
}

// rewindTargets returns where rw moves each of ids.
func (m *Manager) rewindTargets(ctx context.Context, topic string, ids []int, rw *settings.Rewind) (map[int]int64, error) {
	cl, done := m.adminClient()
	defer done()
	if len(rw.Offsets) > 0 {
		first, err := listOffsets(ctx, cl, topic, ids, kafka.FirstOffsetOf, true)
		if err != nil {
			return nil, err
		}
		end, err := listOffsets(ctx, cl, topic, ids, kafka.LastOffsetOf, false)
		if err != nil {
			return nil, err
		}
		out := make(map[int]int64, len(ids))
		for _, id := range ids {
			off, ok := rw.Offsets[id]
			if !ok {
				continue // a partition the rewind does not name keeps its place
			}
			// Clamp into the log: before its start is its start.
			out[id] = min(max(off, first[id]), end[id])
		}
		return out, nil
	}
	return offsetsAt(ctx, cl, topic, ids, rw.To)
}
