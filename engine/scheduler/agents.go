package scheduler

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// agentConns keeps one gRPC connection per agent, opened on first use and
// kept for the agent's lifetime (a re-registration under a new address
// replaces it).
type agentConns struct {
	pool *pool.Store
	// creds are the transport credentials for dialling one agent.
	creds func(agentID string) credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*agentConn
	// local are agents in this process, called directly (UseLocalAgent).
	local map[string]dispatchpb.AgentClient
}

type agentConn struct {
	addr   string
	cc     *grpc.ClientConn
	client dispatchpb.AgentClient
}

func newAgentConns(p *pool.Store) *agentConns {
	return &agentConns{pool: p, conns: map[string]*agentConn{}, local: map[string]dispatchpb.AgentClient{}}
}

func (a *agentConns) get(ctx context.Context, agentID string) (dispatchpb.AgentClient, error) {
	a.mu.Lock()
	c, ok := a.conns[agentID]
	local := a.local[agentID]
	a.mu.Unlock()
	if local != nil {
		return local, nil
	}
	if ok {
		return c.client, nil
	}
	ag, err := a.pool.Agent(ctx, agentID)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w: %w", agentID, ErrUnavailable, err)
	}
	cc, err := grpc.NewClient(ag.Addr, grpc.WithTransportCredentials(a.creds(agentID)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dispatchpb.MaxMessageBytes), grpc.MaxCallSendMsgSize(dispatchpb.MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("dial agent %s at %s: %w", agentID, ag.Addr, err)
	}
	c = &agentConn{addr: ag.Addr, cc: cc, client: dispatchpb.NewAgentClient(cc)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.conns[agentID]; ok { // lost a race: keep the first
		_ = cc.Close()
		return old.client, nil
	}
	a.conns[agentID] = c
	return c.client, nil
}

// forget closes an agent's connection so the next use looks its address up again.
func (a *agentConns) forget(agentID string) {
	a.mu.Lock()
	c, ok := a.conns[agentID]
	delete(a.conns, agentID)
	a.mu.Unlock()
	if ok {
		_ = c.cc.Close()
	}
}

func (a *agentConns) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, c := range a.conns {
		_ = c.cc.Close()
		delete(a.conns, id)
	}
}
