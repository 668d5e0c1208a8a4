package hostagent

import (
	"context"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// The agent's share of the variable sub-pools: it keeps their definitions
// (reloaded on every change notice), starts their instances for their
// minimum warm count and on a scheduler's demand, bounded by each
// sub-pool's maximum across all hosts (a booking in Redis) and by this
// host's capacity, and retires them when their sub-pool is deleted.

// loadSubPools reads every sub-pool definition.
func (a *Agent) loadSubPools(ctx context.Context) error {
	l, err := a.store.SubPools(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]pool.SubPool, len(l))
	for _, p := range l {
		m[p.Name] = p
	}
	a.mu.Lock()
	a.subpools = m
	a.mu.Unlock()
	return nil
}

// onSubPoolsChanged reloads the definitions and tops the pools up.
func (a *Agent) onSubPoolsChanged(ctx context.Context) {
	if err := a.loadSubPools(ctx); err != nil {
		a.log.Warn().Err(err).Msg("reload sub-pools")
		return
	}
	a.kickRefill()
}

// subPoolLocked returns the definition of class's sub-pool, if class is one
// that exists.
func (a *Agent) subPoolLocked(class string) (pool.SubPool, bool) {
	name, ok := pool.SubPoolOf(class)
	if !ok {
		return pool.SubPool{}, false
	}
	p, ok := a.subpools[name]
	return p, ok
}

// ensureSubPools starts instances until each sub-pool has its minimum
// warm count across all hosts, as far as this host has room.
func (a *Agent) ensureSubPools(ctx context.Context) {
	a.mu.Lock()
	var want []pool.SubPool
	for _, p := range a.subpools {
		if p.MinWarm > 0 {
			want = append(want, p)
		}
	}
	a.mu.Unlock()
	for _, p := range want {
		for a.startSubPoolInstance(ctx, p, true) {
		}
	}
}

// startSubPoolInstance books and boots one instance of p; forMinWarm books
// only below p's minimum warm count. It reports whether one was started.
func (a *Agent) startSubPoolInstance(ctx context.Context, p pool.SubPool, forMinWarm bool) bool {
	class := pool.SubPoolClass(p.Name)
	a.mu.Lock()
	in := a.reserveLocked(class, &p, !forMinWarm)
	a.mu.Unlock()
	if in == nil {
		return false
	}
	now := time.Now()
	ok, err := a.store.ReserveSubPoolInstance(ctx, class, in.id, p, forMinWarm,
		now.UnixMilli(), now.Add(a.cfg.InstanceStartTimeout+5*time.Second).UnixMilli())
	if err != nil || !ok {
		if err != nil && ctx.Err() == nil {
			a.log.Warn().Err(err).Str("subpool", p.Name).Msg("book a sub-pool instance")
		}
		a.mu.Lock()
		delete(a.insts, in.id)
		a.mu.Unlock()
		a.starts.Done()
		return false
	}
	a.log.Info().Str("subpool", p.Name).Str("instance", in.id).Bool("min_warm", forMinWarm).Msg("starting a sub-pool instance")
	go a.reportUsed(ctx) // placement sees the host's new use before the next heartbeat
	go a.bootAsync(in)
	return true
}

// usedLocked sums what this host's instances (starting or running) reserve.
func (a *Agent) usedLocked() pool.Resources {
	var u pool.Resources
	for _, in := range a.insts {
		if in.state != stGone {
			u = u.Add(in.needs)
		}
	}
	return u
}

// reportState publishes the host's state resources, for status.
func (a *Agent) reportState(ctx context.Context) {
	if a.deps.State == nil {
		return
	}
	var rs []pool.StateResource
	for _, r := range a.deps.State.Resources() {
		rs = append(rs, pool.StateResource{Agent: a.cfg.AgentID, Tenant: r.Tenant, Name: r.Name,
			SizeBytes: r.SizeBytes, UsedBytes: r.UsedBytes, Attached: r.Attached})
	}
	if err := a.store.ReportState(ctx, a.cfg.AgentID, rs, a.cfg.HeartbeatTTL); err != nil && ctx.Err() == nil {
		a.log.Warn().Err(err).Msg("report state resources")
	}
}

// reportUsed publishes what the host's instances reserve, for placement.
func (a *Agent) reportUsed(ctx context.Context) {
	a.mu.Lock()
	u := a.usedLocked()
	a.mu.Unlock()
	if err := a.store.ReportUsed(ctx, a.cfg.AgentID, u); err != nil && ctx.Err() == nil {
		a.log.Warn().Err(err).Msg("report capacity used")
	}
}
