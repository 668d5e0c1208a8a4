package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// generation is one consumer-group generation of a binding in this
// process: the partitions assigned to it, consumed until the generation
// ends (a rebalance) or the binding stops.
type generation struct {
	c   *consumer
	gen *kafka.Generation
	// client commits and heartbeats for this generation; its own
	// connections, closed when the generation ends.
	client *kafka.Client
	tr     *kafka.Transport

	// soft is cancelled when the partitions are revoked: fetching stops and
	// no invocation starts. hard is cancelled when the drain time is up:
	// in-flight invocations are cancelled.
	soft       context.Context
	softCancel context.CancelFunc
	hard       context.Context
	hardCancel context.CancelFunc

	parts []*partition
	// rewind is the newest rewind id applied to any of the partitions,
	// written into the metadata of every commit so that it is applied
	// once, whichever replica owns a partition later.
	rewind int64
	// stale is set when the coordinator refused a commit for this
	// generation: it has ended and the partitions may be someone else's.
	stale bool
	mu    sync.Mutex // serialises commits
}

// rewindMeta is the prefix of Ember's commit metadata.
const rewindMeta = "ember-rewind:"

func parseRewindMeta(s string) int64 {
	if v, ok := strings.CutPrefix(s, rewindMeta); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return 0
}

// runGeneration consumes gen's assignment and returns after the generation
// ended or the binding stopped, with in-flight work drained and finished
// offsets committed.
func (c *consumer) runGeneration(gen *kafka.Generation) {
	done := make(chan struct{})
	gen.Start(func(genCtx context.Context) {
		defer close(done)
		c.generation(gen, genCtx)
	})
	<-done
}

func (c *consumer) generation(gen *kafka.Generation, genCtx context.Context) {
	g := &generation{c: c, gen: gen, tr: c.m.conn.Transport()}
	defer g.tr.CloseIdleConnections()
	g.client = &kafka.Client{Addr: kafka.TCP(c.m.brokers...), Transport: g.tr, Timeout: 10 * time.Second}
	g.soft, g.softCancel = context.WithCancel(context.Background())
	g.hard, g.hardCancel = context.WithCancel(context.Background())
	defer g.hardCancel()
	// The generation ends when kafka-go sees a rebalance (genCtx) or when
	// the binding stops.
	stopWatch := context.AfterFunc(c.stopCtx, g.softCancel)
	defer stopWatch()
	go func() {
		select {
		case <-genCtx.Done():
			g.softCancel()
		case <-g.soft.Done():
		}
	}()

	c.stats.rebalances.Add(1)
	c.stats.generation.Store(int64(gen.ID))
	defer c.stats.generation.Store(0)
	assigned := gen.Assignments[c.b.Topic]
	c.log.Info().Int32("generation", gen.ID).Int("partitions", len(assigned)).Msg("partitions assigned")

	starts, ok := g.startOffsets(assigned)
	if !ok {
		return // revoked before the partitions could start
	}
	for _, a := range assigned {
		p := newPartition(g, a.ID, starts[a.ID])
		g.parts = append(g.parts, p)
	}
	c.stats.partitions.Store(int64(len(g.parts)))
	defer c.stats.partitions.Store(0)
	trackers := make(map[int]*tracker, len(g.parts))
	for _, p := range g.parts {
		trackers[p.id] = p.tracker
	}
	c.trackers.Store(&trackers)
	defer c.trackers.Store(nil)
	var wg sync.WaitGroup
	for _, p := range g.parts {
		wg.Add(1)
		go func() { defer wg.Done(); p.run() }()
	}

	tick := time.NewTicker(c.m.cfg.commitInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-g.soft.Done():
			break loop
		case <-tick.C:
			g.commit()
		}
	}
	g.revoke(&wg)
}

// revoke stops the partitions: nothing new starts, in-flight invocations
// get the drain time (kept within the rebalance timeout so the coordinator
// never hands a partition to another member while it still runs here),
// then the finished prefix of each partition is committed in this
// generation and the rest is dropped, to be consumed by the next owner.
func (g *generation) revoke(wg *sync.WaitGroup) {
	c := g.c
	bound := c.m.cfg.revokeTimeout()
	if c.stopping() {
		bound = min(bound, c.drainTime)
	}
	// While draining, the member keeps its session: kafka-go stopped
	// heartbeating when it saw the rebalance.
	hbCtx, hbStop := context.WithCancel(context.Background())
	go g.heartbeat(hbCtx)
	defer hbStop()

	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		c.log.Warn().Dur("drain", bound).Int64("in_flight", c.stats.inFlight.Load()).
			Msg("drain time is up: cancelling in-flight invocations")
		g.hardCancel()
		<-drained
	}
	g.commit()
	// At once: closing a reader waits for its fetch in flight (up to the
	// fetch's MaxWait); one after the other, a stop took MaxWait times the
	// partitions.
	var closing sync.WaitGroup
	for _, p := range g.parts {
		closing.Go(p.close)
	}
	closing.Wait()
	c.log.Info().Int32("generation", g.gen.ID).Int("partitions", len(g.parts)).Msg("partitions revoked")
}

// heartbeat keeps the member's session while it drains.
func (g *generation) heartbeat(ctx context.Context) {
	t := time.NewTicker(g.c.m.cfg.heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, g.c.m.cfg.heartbeatInterval)
		_, _ = g.client.Heartbeat(hctx, &kafka.HeartbeatRequest{
			GroupID: g.c.b.GroupID, GenerationID: g.gen.ID, MemberID: g.gen.MemberID,
		})
		cancel()
	}
}

// commit commits the finished prefix of every partition that moved. A
// commit the coordinator refuses for this generation marks it stale: the
// generation is over and nothing more is committed in it.
func (g *generation) commit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stale {
		return
	}
	var offs []kafka.OffsetCommit
	var parts []*partition
	meta := ""
	if g.rewind > 0 {
		meta = rewindMeta + strconv.FormatInt(g.rewind, 10)
	}
	for _, p := range g.parts {
		if off, moved := p.tracker.toCommit(); moved {
			offs = append(offs, kafka.OffsetCommit{Partition: p.id, Offset: off, Metadata: meta})
			parts = append(parts, p)
		}
	}
	if len(offs) == 0 {
		return
	}
	if err := g.commitOffsets(offs); err != nil {
		if errors.Is(err, kafka.IllegalGeneration) || errors.Is(err, kafka.UnknownMemberId) ||
			errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.FencedInstanceID) {
			g.stale = true
			g.c.log.Info().Err(err).Int32("generation", g.gen.ID).Msg("commit refused: the generation ended")
			g.softCancel()
			return
		}
		g.c.log.Warn().Err(err).Int("partitions", len(offs)).Msg("commit failed, will retry")
		return
	}
	var observe func(ts, doneAt int64)
	if m := g.c.metrics; m != nil {
		now := time.Now().UnixNano()
		observe = func(ts, doneAt int64) {
			if ts != 0 {
				m.eventToCommit.Observe(float64(now-ts) / 1e9)
			}
			m.doneToCommit.Observe(float64(now-doneAt) / 1e9)
		}
	}
	for i, p := range parts {
		p.tracker.committedAt(offs[i].Offset, observe)
	}
	g.c.stats.commits.Add(1)
}

// commitOffsets commits offs in this generation.
func (g *generation) commitOffsets(offs []kafka.OffsetCommit) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := g.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: g.c.b.GroupID, GenerationID: int(g.gen.ID), MemberID: g.gen.MemberID,
		Topics: map[string][]kafka.OffsetCommit{g.c.b.Topic: offs},
	})
	if err != nil {
		return err
	}
	got := resp.Topics[g.c.b.Topic]
	if len(got) != len(offs) {
		return fmt.Errorf("commit of %d partitions answered for %d", len(offs), len(got))
	}
	for _, p := range got {
		if p.Error != nil {
			return fmt.Errorf("commit partition %d: %w", p.Partition, p.Error)
		}
	}
	return nil
}

// startOffsets returns where each assigned partition starts: its committed
// offset, kafka.FirstOffset when there is none, or the binding's rewind
// target when the rewind was not applied to the partition yet (the target
// is then committed at once, with the rewind's id, so that it is applied
// exactly once). It retries until it succeeds (true) or the generation is
// revoked (false).
func (g *generation) startOffsets(assigned []kafka.PartitionAssignment) (map[int]int64, bool) {
	c := g.c
	ids := make([]int, len(assigned))
	for i, a := range assigned {
		ids[i] = a.ID
	}
	starts := make(map[int]int64, len(assigned))
	if len(ids) == 0 {
		return starts, true
	}
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		err := g.resolveStarts(ids, starts)
		if err == nil {
			return starts, true
		}
		c.log.Warn().Err(err).Msg("reading the committed offsets, retrying")
		t := time.NewTimer(bo.next())
		select {
		case <-t.C:
		case <-g.soft.Done():
			t.Stop()
			return nil, false
		}
	}
}

func (g *generation) resolveStarts(ids []int, starts map[int]int64) error {
	c := g.c
	ctx, cancel := context.WithTimeout(g.soft, 10*time.Second)
	defer cancel()
	committed, err := g.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{
		GroupID: c.b.GroupID, Topics: map[string][]int{c.b.Topic: ids},
	})
	if err != nil {
		return fmt.Errorf("offset fetch: %w", err)
	}
	if committed.Error != nil && !errors.Is(committed.Error, kafka.GroupIdNotFound) {
		return fmt.Errorf("offset fetch: %w", committed.Error)
	}
	applied := map[int]int64{}
	for _, p := range committed.Topics[c.b.Topic] {
		if p.Error != nil {
			return fmt.Errorf("committed offset of partition %d: %w", p.Partition, p.Error)
		}
		starts[p.Partition] = p.CommittedOffset
		if p.CommittedOffset < 0 {
			starts[p.Partition] = kafka.FirstOffset
		}
		applied[p.Partition] = parseRewindMeta(p.Metadata)
		g.rewind = max(g.rewind, applied[p.Partition])
	}
	for _, id := range ids {
		if _, ok := starts[id]; !ok {
			starts[id] = kafka.FirstOffset
		}
	}
	rw := c.b.Rewind
	if rw == nil {
		return nil
	}
	var todo []int
	for _, id := range ids {
		if applied[id] < rw.ID {
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	targets, err := c.m.rewindTargets(ctx, c.b.Topic, todo, rw)
	if err != nil {
		return fmt.Errorf("rewind %d: %w", rw.ID, err)
	}
	meta := rewindMeta + strconv.FormatInt(rw.ID, 10)
	// Partitions the rewind does not name (explicit offsets) keep their
	// place; the rest are committed at their target with the rewind's id.
	offs := make([]kafka.OffsetCommit, 0, len(targets))
	for id, off := range targets {
		offs = append(offs, kafka.OffsetCommit{Partition: id, Offset: off, Metadata: meta})
	}
	if len(offs) > 0 {
		if err := g.commitOffsets(offs); err != nil {
			return fmt.Errorf("commit rewind %d: %w", rw.ID, err)
		}
	}
	for id, off := range targets {
		starts[id] = off
	}
	g.rewind = max(g.rewind, rw.ID)
	c.log.Info().Int64("rewind", rw.ID).Interface("offsets", targets).Msg("rewound partitions")
	return nil
}
