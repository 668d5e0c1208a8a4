package placement

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/ember-run/ember/engine/pool"
)

// ErrNeverFits is wrapped by errors for requests no pool or host can ever
// satisfy: they fail at once instead of waiting.
var ErrNeverFits = errors.New("no pool or host can ever satisfy this")

// ErrNoRoom is wrapped by Host's error when hosts could hold the instance
// but none has room now: the invocation waits for one to free.
var ErrNoRoom = errors.New("no host has room now")

// Function is what a function asks of its pool.
type Function struct {
	Tenant   string
	MemoryMB int64
	// SubPool names the sub-pool the function must run in ("": any).
	SubPool string
	// Network is the function's network mode ("egress" or "none"): a
	// sub-pool without network serves only functions that ask for none or
	// name it.
	Network string
}

// Choice is a function's pool: a fixed class, or a sub-pool.
type Choice struct {
	Class string
	// SubPool is set when Class is a sub-pool's.
	SubPool *pool.SubPool
}

// Choose returns the pool fn runs in, given every sub-pool (of all
// tenants; only fn's tenant's are eligible).
func Choose(fn Function, subpools []pool.SubPool) (Choice, error) {
	var mine []pool.SubPool
	for _, p := range subpools {
		if p.Tenant == fn.Tenant {
			mine = append(mine, p)
		}
	}
	if fn.SubPool != "" {
		i := slices.IndexFunc(mine, func(p pool.SubPool) bool { return p.Name == fn.SubPool })
		if i < 0 {
			return Choice{}, fmt.Errorf("sub-pool %q is not reserved for tenant %s: %w", fn.SubPool, fn.Tenant, ErrNeverFits)
		}
		p := mine[i]
		if fn.MemoryMB > p.MemoryMB {
			return Choice{}, fmt.Errorf("the function needs %d MB; sub-pool %s has %d MB instances: %w", fn.MemoryMB, p.Name, p.MemoryMB, ErrNeverFits)
		}
		return Choice{Class: pool.SubPoolClass(p.Name), SubPool: &p}, nil
	}
	var best *pool.SubPool
	for i := range mine {
		p := &mine[i]
		if p.Network == "none" && fn.Network != "none" {
			continue // never take a function's network away unasked
		}
		if p.MemoryMB >= fn.MemoryMB && (best == nil || p.MemoryMB < best.MemoryMB ||
			(p.MemoryMB == best.MemoryMB && p.Name < best.Name)) {
			best = p
		}
	}
	if best != nil {
		return Choice{Class: pool.SubPoolClass(best.Name), SubPool: best}, nil
	}
	class, err := pool.ClassFor(fn.MemoryMB)
	if err != nil {
		return Choice{}, fmt.Errorf("%d MB: above the fixed classes and no sub-pool of tenant %s holds it: %w", fn.MemoryMB, fn.Tenant, ErrNeverFits)
	}
	return Choice{Class: class}, nil
}

// Host returns the agent that should start an instance needing need
// (agents that report no capacity may hold it, but are never chosen):
// among the agents whose capacity could ever hold it (none: ErrNeverFits;
// no live agent at all is ErrNoRoom: one may be starting),
// those with room now (none: ErrNoRoom), the one left with the least free
// memory, then the least free CPU, then the smallest id.
func Host(need pool.Resources, agents []pool.Agent) (string, error) {
	type cand struct {
		id   string
		left pool.Resources
	}
	var could bool
	var room []cand
	for _, a := range agents {
		if a.Capacity.MemoryMB == 0 { // not reported (an older agent): it may fit
			could = true
			continue
		}
		if !a.Capacity.Fits(need) {
			continue
		}
		could = true
		if free := a.Capacity.Sub(a.Used); free.Fits(need) {
			room = append(room, cand{a.ID, free.Sub(need)})
		}
	}
	if len(agents) == 0 {
		return "", fmt.Errorf("no live host: %w", ErrNoRoom)
	}
	if !could {
		return "", fmt.Errorf("an instance of %d MB and %.1f vCPU is larger than every live host: %w",
			need.MemoryMB, float64(need.MilliCPU)/1000, ErrNeverFits)
	}
	if len(room) == 0 {
		return "", fmt.Errorf("%d MB and %.1f vCPU: %w", need.MemoryMB, float64(need.MilliCPU)/1000, ErrNoRoom)
	}
	best := slices.MinFunc(room, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.left.MemoryMB, b.left.MemoryMB), cmp.Compare(a.left.MilliCPU, b.left.MilliCPU), cmp.Compare(a.id, b.id))
	})
	return best.id, nil
}
