package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/settings"
)

// pinStart fixes a `latest` or `at_timestamp` binding's starting position
// before the process joins the group, the way Lambda fixes an event source
// mapping's position when it is created: every partition of the topic on
// which the group never committed gets its starting offset committed (the
// end of the log, or the first record at or after the timestamp). A
// partition that appears later, or on which nothing was pinned, is read
// from its beginning, never skipped. pinStart retries with backoff until it
// succeeds (true) or the binding stops (false).
func (c *consumer) pinStart() bool {
	if c.b.StartingPosition == settings.TrimHorizon {
		return true // partitions without a commit start at FirstOffset
	}
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		ctx, cancel := context.WithTimeout(c.stopCtx, 10*time.Second)
		err := c.pin(ctx)
		cancel()
		if err == nil {
			return true
		}
		if c.stopping() {
			return false
		}
		c.log.Warn().Err(err).Msg("pin starting position failed, retrying")
		if !c.sleep(bo.next()) {
			return false
		}
	}
}

// pin commits the starting offset of each partition on which the group has
// no committed offset.
func (c *consumer) pin(ctx context.Context) error {
	cl, done := c.m.adminClient()
	defer done()
	ids, err := partitionsOf(ctx, cl, c.b.Topic)
	if err != nil || len(ids) == 0 {
		return err
	}
	// Starting offsets are read before the committed ones, so a start is
	// never newer than the observation that the partition had no commit.
	var start map[int]int64
	if c.b.StartingPosition == settings.AtTimestamp {
		start, err = offsetsAt(ctx, cl, c.b.Topic, ids, c.b.StartingTimestamp)
	} else {
		start, err = listOffsets(ctx, cl, c.b.Topic, ids, kafka.LastOffsetOf, false)
	}
	if err != nil {
		return err
	}
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.b.GroupID, Topics: map[string][]int{c.b.Topic: ids}})
	if err != nil {
		return fmt.Errorf("offset fetch: %w", err)
	}
	committed := make(map[int]int64, len(ids))
	switch {
	case of.Error == nil:
		for _, p := range of.Topics[c.b.Topic] {
			if p.Error != nil {
				return fmt.Errorf("committed offset of partition %d: %w", p.Partition, p.Error)
			}
			committed[p.Partition] = p.CommittedOffset
		}
	case errors.Is(of.Error, kafka.GroupIdNotFound):
		// The group never committed anything.
	default:
		return fmt.Errorf("offset fetch for group %q: %w", c.b.GroupID, of.Error)
	}
	var pins []kafka.OffsetCommit
	for _, id := range ids {
		if off, ok := committed[id]; ok && off >= 0 {
			continue
		}
		pins = append(pins, kafka.OffsetCommit{Partition: id, Offset: start[id]})
	}
	if len(pins) == 0 {
		return nil
	}
	// Generation -1 and no member id: a commit for a group with no active
	// member. If the group is active, another replica already runs this
	// binding and pinned its partitions before it joined.
	resp, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: c.b.GroupID, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{c.b.Topic: pins},
	})
	if err != nil {
		return fmt.Errorf("commit starting offsets: %w", err)
	}
	if len(resp.Topics[c.b.Topic]) != len(pins) {
		return fmt.Errorf("commit of %d starting offsets answered for %d partitions", len(pins), len(resp.Topics[c.b.Topic]))
	}
	active := 0
	for _, p := range resp.Topics[c.b.Topic] {
		switch {
		case p.Error == nil:
		case errors.Is(p.Error, kafka.UnknownMemberId), errors.Is(p.Error, kafka.IllegalGeneration),
			errors.Is(p.Error, kafka.RebalanceInProgress):
			active++
		default:
			return fmt.Errorf("commit starting offset of partition %d: %w", p.Partition, p.Error)
		}
	}
	if active > 0 {
		c.log.Debug().Int("partitions", active).Msg("group is active: another replica pinned the starting position")
		return nil
	}
	c.log.Info().Int("partitions", len(pins)).Str("position", c.b.StartingPosition).Msg("pinned starting position")
	return nil
}
