package hostagent

import (
	"context"
	"time"
)

// Instances defined ahead: for each fixed class of the warming pool's
// configuration (Config.Pool, a target of 0 included) the agent keeps,
// while the host has a uid-range slot for it, one instance whose
// containerd container (its record and its root file system's snapshot)
// is made but not started (sandbox's Define), so that the class's next
// boot, an on-demand one above all, starts at runc: 10-18 ms of a boot
// here. It is made after the pool's first fill and on the manager's pass
// after refills, off the invocations' path. It holds its slot, not memory
// or CPU: a boot that needs the slot on a full host takes it (slotLocked),
// and the agent's stop destroys it (a killed agent's is swept at its next
// start, with every container it does not know).

// defineTimeout bounds one definition.
const defineTimeout = 30 * time.Second

// ahead is an instance defined ahead: ready once its definition is done.
type ahead struct {
	in    *instance
	ready bool
}

// takeAheadLocked returns class's instance defined ahead, no longer kept
// as such (marked definedAhead), or nil (none, or its definition not
// done). a.mu held.
func (a *Agent) takeAheadLocked(class string) *instance {
	ah := a.ahead[class]
	if ah == nil || !ah.ready {
		return nil
	}
	delete(a.ahead, class)
	ah.in.definedAhead = true
	return ah.in
}

// slotLocked is the lowest uid-range slot that neither a live instance nor
// one defined ahead holds. When the ones defined ahead hold every slot
// left, one of them gives its slot up: destroyed in the background (one
// whose definition is still under way, by define once it returns; the
// container it makes is never started, so sharing the uid range with the
// new instance meanwhile is harmless). a.mu held, after the MaxInstances
// check, so a slot is free or held ahead.
func (a *Agent) slotLocked() int {
	used := make(map[int]bool, len(a.insts)+len(a.ahead))
	for _, in := range a.insts {
		if in.state != stGone {
			used[in.slot] = true
		}
	}
	for _, ah := range a.ahead {
		used[ah.in.slot] = true
	}
	for n := 0; n < a.cfg.MaxInstances; n++ {
		if !used[n] {
			return n
		}
	}
	for class, ah := range a.ahead {
		delete(a.ahead, class)
		if ah.ready {
			a.dropAhead(ah.in)
		}
		return ah.in.slot
	}
	panic("hostagent: no uid-range slot below MaxInstances") // the caller checked there is one
}

// defineAhead defines an instance ahead for each fixed class that has
// none, while the host has a slot for it. The manager calls it after each
// refill.
func (a *Agent) defineAhead() {
	a.mu.Lock()
	if a.closing || a.roomBusy {
		a.mu.Unlock()
		return
	}
	var todo []*instance
	for _, class := range a.cfg.classes() {
		if a.ahead[class] != nil || a.liveLocked()+len(a.ahead) >= a.cfg.MaxInstances {
			continue
		}
		in := a.newInstanceLocked(class, nil, a.slotLocked())
		a.ahead[class] = &ahead{in: in}
		todo = append(todo, in)
	}
	if len(todo) > 0 {
		a.starts.Add(1) // waited for at shutdown, like boots
	}
	a.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	go func() {
		defer a.starts.Done()
		for _, in := range todo {
			a.define(in)
		}
	}()
}

// define makes in's container: ready to boot, or no longer kept ahead.
func (a *Agent) define(in *instance) {
	ctx, cancel := context.WithTimeout(a.bg, defineTimeout)
	defer cancel()
	err := a.deps.Runtime.Define(ctx, a.instanceSpec(in))
	a.mu.Lock()
	ah := a.ahead[in.class]
	mine := ah != nil && ah.in == in
	switch {
	case mine && err == nil:
		ah.ready = true
	case mine:
		delete(a.ahead, in.class)
	}
	a.mu.Unlock()
	if err == nil {
		if !mine { // its slot was taken meanwhile (slotLocked)
			a.dropAhead(in)
		}
		return
	}
	if a.bg.Err() == nil {
		a.log.Warn().Err(err).Str("instance", in.id).Str("class", in.class).Msg("define an instance ahead")
	}
	a.dropAhead(in)
}

// dropAhead destroys what an instance defined ahead left in the runtime,
// in the background (waited for at shutdown).
func (a *Agent) dropAhead(in *instance) {
	a.starts.Add(1)
	go func() {
		defer a.starts.Done()
		ctx, cancel := context.WithTimeout(context.Background(), defineTimeout)
		defer cancel()
		a.removeAhead(ctx, in)
	}()
}

// removeAhead destroys an instance defined ahead in the runtime.
func (a *Agent) removeAhead(ctx context.Context, in *instance) {
	if err := a.deps.Runtime.Destroy(ctx, in.id); err != nil {
		a.log.Warn().Err(err).Str("instance", in.id).Msg("remove an instance defined ahead")
	}
}

// dropAllAhead destroys every instance defined ahead (the agent's stop).
func (a *Agent) dropAllAhead(ctx context.Context) {
	a.mu.Lock()
	all := make([]*instance, 0, len(a.ahead))
	for class, ah := range a.ahead {
		all = append(all, ah.in)
		delete(a.ahead, class)
	}
	a.mu.Unlock()
	for _, in := range all {
		a.removeAhead(ctx, in)
	}
}
