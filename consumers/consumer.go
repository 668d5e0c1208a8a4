package consumers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers/filter"
)

// consumer runs one binding: it is a member of the binding's consumer
// group and, for each generation, consumes the partitions assigned to it.
type consumer struct {
	m         *Manager
	b         Binding
	log       zerolog.Logger
	bootstrap string
	filters   []*filter.Pattern
	sinks     *sinks
	metrics   *bindingMetrics
	stats     counters

	stopCh    chan struct{} // closed when the binding starts stopping
	stopOnce  sync.Once
	stopCtx   context.Context // cancelled with stopCh
	stopAll   context.CancelFunc
	drainTime time.Duration // set before stopCh is closed
	done      chan struct{}
	// trackers are the current generation's partitions, for RecordTime.
	trackers atomic.Pointer[map[int]*tracker]
}

func startConsumer(m *Manager, b Binding) *consumer {
	c := &consumer{
		m:         m,
		b:         b,
		log:       m.log.With().Str("binding", b.ID).Str("topic", b.Topic).Logger(),
		bootstrap: strings.Join(m.brokers, ","),
		stopCh:    make(chan struct{}),
		done:      make(chan struct{}),
	}
	for _, f := range b.Filters {
		p, err := filter.Compile(f)
		if err != nil { // Validate compiled it already
			panic(fmt.Sprintf("consumers: filter of a validated binding: %v", err))
		}
		c.filters = append(c.filters, p)
	}
	if m.metrics != nil {
		c.metrics = m.metrics.forBinding(b.ID)
	}
	c.stopCtx, c.stopAll = context.WithCancel(context.Background())
	c.sinks = newSinks(m, b, c.log)
	go c.run()
	return c
}

// stop drains the binding: no new fetches or invocations, in-flight ones
// finish (up to drainTimeout, then they are cancelled), finished offsets are
// committed and the process leaves the group. It returns when all of that
// is done.
func (c *consumer) stop(drainTimeout time.Duration) {
	c.stopOnce.Do(func() {
		c.drainTime = drainTimeout
		close(c.stopCh)
		c.stopAll()
	})
	<-c.done
}

func (c *consumer) stopping() bool {
	select {
	case <-c.stopCh:
		return true
	default:
		return false
	}
}

func (c *consumer) run() {
	defer close(c.done)
	defer c.sinks.close()
	if !c.waitTopic() || !c.pinStart() {
		return // stopped first: nothing was fetched
	}
	errLog := c.log.With().Str("client", "kafka-go").Logger()
	cfg := c.m.cfg
	var conns groupConns
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                     c.b.GroupID,
		Brokers:                c.m.brokers,
		Dialer:                 conns.dialer(c.m.conn.Dialer()),
		Topics:                 []string{c.b.Topic},
		HeartbeatInterval:      cfg.heartbeatInterval,
		SessionTimeout:         cfg.sessionTimeout,
		RebalanceTimeout:       cfg.rebalanceTimeout,
		JoinGroupBackoff:       500 * time.Millisecond,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 2 * time.Second,
		StartOffset:            kafka.FirstOffset,
		Timeout:                10 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			errLog.Debug().Msgf(msg, args...)
		}),
	})
	if err != nil { // only an invalid configuration, which New prevents
		c.log.Error().Err(err).Msg("consumer group")
		return
	}
	var member string // the member id of the latest generation
	defer func() {
		cut, err := leaveGroup(cg, &conns, time.Second)
		if err != nil {
			c.log.Debug().Err(err).Msg("leave group")
		}
		if cut && member != "" {
			c.leaveAgain(member)
		}
	}()
	// A generation that ends at once with nothing assigned (a topic deleted
	// under the group) would otherwise rejoin in a tight loop. One with
	// partitions goes on at once: they wait for it.
	churn := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	var lastErr string
	for {
		gen, err := cg.Next(c.stopCtx)
		if err != nil {
			if c.stopping() {
				return
			}
			// kafka-go backs off between attempts; say each new problem once.
			if msg := err.Error(); msg != lastErr {
				c.log.Warn().Err(err).Msg("joining the consumer group, retrying")
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		member = gen.MemberID
		began := time.Now()
		c.runGeneration(gen)
		if c.stopping() {
			return
		}
		if time.Since(began) < time.Second && len(gen.Assignments[c.b.Topic]) == 0 {
			if !c.sleep(churn.next()) {
				return
			}
		} else {
			churn.reset()
		}
	}
}

// leaveAgain asks the coordinator to drop member, after leaveGroup had to
// cut a JoinGroup short: kafka-go forgets its member id when a join fails
// and then leaves nothing, so the member would stay in the group until the
// coordinator expires it - and a coordinator that lost the join's reply
// (kfake, the embedded broker) never does: its partitions would stay
// assigned to a process that is gone. A member already gone is
// UNKNOWN_MEMBER_ID, which is fine.
func (c *consumer) leaveAgain(member string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(c.m.brokers...), Transport: c.m.conn.Transport(), Timeout: 5 * time.Second}
	resp, err := cl.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: c.b.GroupID, Members: []kafka.LeaveGroupRequestMember{{ID: member}}})
	if err == nil {
		err = resp.Error
	}
	if err != nil && !errors.Is(err, kafka.UnknownMemberId) {
		c.log.Warn().Err(err).Str("member", member).Msg("leaving the group after a cut join")
		return
	}
	c.log.Debug().Str("member", member).Msg("left the group after a cut join")
}

// waitTopic waits until the topic exists (true) or the binding stops
// (false). A group joined for a missing topic would rebalance in a loop.
func (c *consumer) waitTopic() bool {
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	logged := false
	for {
		ctx, cancel := context.WithTimeout(c.stopCtx, 10*time.Second)
		_, err := c.m.partitions(ctx, c.b.Topic)
		cancel()
		if err == nil {
			return true
		}
		if c.stopping() {
			return false
		}
		if !logged {
			ev := c.log.Warn()
			if errors.Is(err, kafka.UnknownTopicOrPartition) {
				ev = c.log.Info()
			}
			ev.Err(err).Msg("waiting for the topic")
			logged = true
		}
		if !c.sleep(bo.next()) {
			return false
		}
	}
}

// sleep waits d and reports true, or false when the binding stops first.
func (c *consumer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stopCh:
		return false
	}
}

// retryBackoff paces retries of one thing.
func (c *consumer) retryBackoff() backoff {
	return backoff{min: c.m.cfg.retryMin, max: c.m.cfg.retryMax}
}

// backoff doubles from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
