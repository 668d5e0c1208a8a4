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
// waiting on the coordinator: the connections that were open before the
// close began are cut, which ends the wait (the LeaveGroup request kafka-go
// then sends uses a new connection).
func leaveGroup(cg *kafka.ConsumerGroup, g *groupConns, grace time.Duration) error {
	before := g.open()
	done := make(chan error, 1)
	go func() { done <- cg.Close() }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	for _, c := range before {
		_ = c.Close()
	}
	return <-done
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
