package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ember-run/ember/engine/placement"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
)

// subPoolTTL bounds how stale the cached sub-pool definitions may be;
// Run also drops the cache on every change notice.
const subPoolTTL = 2 * time.Second

// subPoolCache holds every sub-pool definition, so that choosing a pool
// costs no Redis round trip on the hot path.
type subPoolCache struct {
	store  *pool.Store
	mu     sync.Mutex
	list   []pool.SubPool
	loaded time.Time
}

func (c *subPoolCache) get(ctx context.Context) ([]pool.SubPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded.IsZero() && time.Since(c.loaded) < subPoolTTL {
		return c.list, nil
	}
	l, err := c.store.SubPools(ctx)
	if err != nil {
		return nil, err
	}
	c.list, c.loaded = l, time.Now()
	return l, nil
}

func (c *subPoolCache) invalidate() {
	c.mu.Lock()
	c.loaded = time.Time{}
	c.mu.Unlock()
}

// choose returns v's pool; a pool nothing can satisfy is an error wrapping
// placement.ErrNeverFits and registry.ErrInvalid (a request to fix, not to
// retry).
func (s *Scheduler) choose(ctx context.Context, v registry.Version) (placement.Choice, error) {
	// One look at the cache per invocation. Without the definitions, a
	// function that needs no sub-pool still runs in a fixed class.
	sps, err := s.subpools.get(ctx)
	if err != nil {
		if v.SubPool != "" || v.MemoryMB > pool.StandardClasses[len(pool.StandardClasses)-1] {
			return placement.Choice{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		sps = nil
	}
	c, err := placement.Choose(placement.Function{Tenant: v.Tenant, MemoryMB: v.MemoryMB, SubPool: v.SubPool, Network: v.Network}, sps)
	if err != nil {
		return c, fmt.Errorf("%w: %w", err, registry.ErrInvalid)
	}
	return c, nil
}

// host picks the agent that should start an instance of a sub-pool. A
// sub-pool no live host could ever hold is an immediate error; no room now
// (or no agent list) leaves the choice to the agents ("").
func (s *Scheduler) host(ctx context.Context, sp *pool.SubPool) (string, error) {
	agents, err := s.pool.Agents(ctx)
	if err != nil {
		return "", nil
	}
	id, err := placement.Host(sp.Needs(), agents)
	switch {
	case errors.Is(err, placement.ErrNeverFits):
		return "", fmt.Errorf("sub-pool %s: %w: %w", sp.Name, err, registry.ErrInvalid)
	case err != nil:
		return "", nil
	}
	return id, nil
}
