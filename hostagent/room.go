package hostagent

import (
	"context"
	"sort"
	"time"

	"github.com/ember-run/ember/engine/pool"
)

// roomTurn is how long one agent has the turn to make room for a class
// (pool.Store.TakeRoomTurn): about an instance's boot and claim.
const roomTurn = 2 * time.Second

// roomFor starts an instance of class on a host that is full by retiring
// idle ones, so that a scheduler's waiter is not refused while idle
// instances hold the room. In order: warm instances of other classes
// beyond their class's target (the class with the largest surplus first),
// then tenants' instances idle the longest, then warm instances of other
// classes at their target (the refill puts them back once room allows).
// Sub-pools' instances, busy ones and those used within RoomMinIdle are
// never taken, nor any when all of them together would not make room.
// Each is retired in Redis first (Retire fails for one a scheduler just
// claimed) and destroyed; after each the new instance is tried again. One
// agent per class has the turn at a time. It reports whether the instance
// of class started booting.
func (a *Agent) roomFor(ctx context.Context, class string) bool {
	cands, enough := a.roomCandidates(class, time.Now())
	if !enough {
		return false
	}
	if ok, err := a.store.TakeRoomTurn(ctx, class, a.cfg.AgentID, roomTurn); err != nil || !ok {
		if err != nil {
			a.log.Warn().Err(err).Str("class", class).Msg("make room")
		}
		return false
	}
	// A teardown begun is finished even if shutdown cancels ctx (an
	// instance half destroyed would be out of the agent's books).
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancel()
	for _, in := range cands {
		if !in.op.TryLock() {
			continue // a dispatch is on it
		}
		a.mu.Lock()
		idle := in.state == stReady && !in.busyLocked() && !a.closing
		a.mu.Unlock()
		if !idle {
			in.op.Unlock()
			continue
		}
		gone, err := a.store.Retire(dctx, in.id, false)
		if err != nil {
			a.log.Warn().Err(err).Str("instance", in.id).Msg("retire an idle instance to make room")
		}
		if gone {
			a.destroy(dctx, in, "its room went to a waiter of class "+class)
		}
		in.op.Unlock()
		if !gone {
			continue
		}
		a.mu.Lock()
		next := a.reserveLocked(class, nil, true)
		a.mu.Unlock()
		if next != nil {
			a.log.Info().Str("class", class).Str("instance", next.id).Msg("starting an instance on demand in the room of idle ones")
			go a.bootAsync(next)
			return true
		}
	}
	return false
}

// roomCandidates lists, in the order roomFor retires them, the idle
// instances it may take for class, and whether retiring them all would
// make room for it.
func (a *Agent) roomCandidates(class string, now time.Time) ([]*instance, bool) {
	need, ok := pool.FixedNeeds(class)
	if !ok {
		return nil, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	warm := a.warmLocked()
	type cand struct {
		in   *instance
		rank int // 0 warm beyond target, 1 a tenant's, 2 warm at target
		// surplus of its class beyond target (rank 0)
		surplus int
	}
	var cs []cand
	for _, in := range a.insts {
		if in.state != stReady || in.busyLocked() || in.subpool != nil || now.Sub(in.lastUsed) < a.cfg.RoomMinIdle {
			continue
		}
		switch {
		case in.tenant != "":
			cs = append(cs, cand{in: in, rank: 1})
		case in.class == class:
			// A warm one of the class itself would serve the waiter.
		case warm[in.class] > a.cfg.Pool[in.class]:
			cs = append(cs, cand{in: in, rank: 0, surplus: warm[in.class] - a.cfg.Pool[in.class]})
		default:
			cs = append(cs, cand{in: in, rank: 2})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		x, y := cs[i], cs[j]
		if x.rank != y.rank {
			return x.rank < y.rank
		}
		if x.surplus != y.surplus {
			return x.surplus > y.surplus
		}
		return x.in.lastUsed.Before(y.in.lastUsed)
	})
	out := make([]*instance, len(cs))
	freed := pool.Resources{}
	for i, c := range cs {
		out[i] = c.in
		freed = freed.Add(c.in.needs)
	}
	enough := a.liveLocked()-len(out) < a.cfg.MaxInstances && a.cfg.Capacity.Fits(a.usedLocked().Sub(freed).Add(need))
	return out, enough
}
