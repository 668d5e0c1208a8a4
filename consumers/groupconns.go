package consumers

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// groupConns tracks the connections one kafka-go ConsumerGroup opens, so
// that leaving the group can cut a request kafka-go would otherwise wait
// out: a JoinGroup may block at the coordinator for the rebalance timeout
// plus 10 s (until every other member rejoins), and ConsumerGroup.Close
// waits for it.
type groupConns struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// dialer returns base with a DialFunc that records every connection.
func (g *groupConns) dialer(base *kafka.Dialer) *kafka.Dialer {
	d := *base
	nd := &net.Dialer{Timeout: base.Timeout, KeepAlive: 30 * time.Second}
	d.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, g: g}
		g.mu.Lock()
		if g.conns == nil {
			g.conns = map[*trackedConn]struct{}{}
		}
		g.conns[tc] = struct{}{}
		g.mu.Unlock()
		return tc, nil
	}
	return &d
}

// open returns the connections open now.
func (g *groupConns) open() []*trackedConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*trackedConn, 0, len(g.conns))
	for c := range g.conns {
		out = append(out, c)
	}
	return out
}

// leaveGroup closes cg. When that takes longer than grace, kafka-go is
// waiting on the coordinator (a JoinGroup may be held until every other
// member rejoins): its connections are cut, and cut again every grace/4
// while the close goes on (kafka-go may have opened the next join's
// connection meanwhile). cut reports it came to that: kafka-go forgets its
// member id when a join fails, and then leaves nothing.
func leaveGroup(cg *kafka.ConsumerGroup, g *groupConns, grace time.Duration) (cut bool, err error) {
	done := make(chan error, 1)
	go func() { done <- cg.Close() }()
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return cut, err
		case <-t.C:
		}
		for _, c := range g.open() {
			_ = c.Close()
		}
		cut = true
		t.Reset(grace / 4)
	}
}

// trackedConn removes itself from its groupConns when closed.
type trackedConn struct {
	net.Conn
	g    *groupConns
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
	})
	return c.Conn.Close()
}
